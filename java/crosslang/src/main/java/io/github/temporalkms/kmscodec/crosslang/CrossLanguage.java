package io.github.temporalkms.kmscodec.crosslang;

import com.fasterxml.jackson.annotation.JsonIgnoreProperties;
import com.fasterxml.jackson.annotation.JsonProperty;
import io.temporal.activity.ActivityInterface;
import io.temporal.activity.ActivityMethod;
import io.temporal.activity.ActivityOptions;
import io.temporal.workflow.QueryMethod;
import io.temporal.workflow.SignalMethod;
import io.temporal.workflow.Workflow;
import io.temporal.workflow.WorkflowInterface;
import io.temporal.workflow.WorkflowMethod;
import java.time.Duration;

/** The workflow and activity of the mixed-language tests, as every language implements them. */
final class CrossLanguage {
  static final String LANGUAGE = "java";

  private CrossLanguage() {}

  /** The workflow's argument and the activity's. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static final class Input {
    @JsonProperty("id")
    public String id;

    @JsonProperty("secret")
    public String secret;

    public Input() {}

    Input(String id, String secret) {
      this.id = id;
      this.secret = secret;
    }
  }

  /** The activity's result. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static final class ActivityResult {
    @JsonProperty("id")
    public String id;

    @JsonProperty("secret")
    public String secret;

    @JsonProperty("activity_language")
    public String activityLanguage;
  }

  /** The argument of signal {@code finish}. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static final class Finish {
    @JsonProperty("note")
    public String note;

    public Finish() {}

    Finish(String note) {
      this.note = note;
    }
  }

  /** The workflow's result. */
  @JsonIgnoreProperties(ignoreUnknown = true)
  public static final class Result {
    @JsonProperty("id")
    public String id;

    @JsonProperty("secret")
    public String secret;

    @JsonProperty("note")
    public String note;

    @JsonProperty("activity_language")
    public String activityLanguage;

    @JsonProperty("workflow_language")
    public String workflowLanguage;
  }

  @WorkflowInterface
  public interface CrossLanguageWorkflow {
    @WorkflowMethod(name = "CrossLanguageWorkflow")
    Result run(Input input);

    @SignalMethod(name = "finish")
    void finish(Finish finish);

    @QueryMethod(name = "progress")
    String progress();
  }

  @ActivityInterface
  public interface CrossLanguageActivity {
    @ActivityMethod(name = "CrossLanguageActivity")
    ActivityResult run(Input input);
  }

  public static final class CrossLanguageWorkflowImpl implements CrossLanguageWorkflow {
    private final CrossLanguageActivity activity =
        Workflow.newActivityStub(
            CrossLanguageActivity.class,
            ActivityOptions.newBuilder().setStartToCloseTimeout(Duration.ofSeconds(30)).build());
    private Finish finish;

    @Override
    public Result run(Input input) {
      ActivityResult fromActivity = activity.run(input);
      Workflow.await(() -> finish != null);
      Result result = new Result();
      result.id = fromActivity.id;
      result.secret = fromActivity.secret;
      result.note = finish.note;
      result.activityLanguage = fromActivity.activityLanguage;
      result.workflowLanguage = LANGUAGE;
      return result;
    }

    @Override
    public void finish(Finish finish) {
      this.finish = finish;
    }

    @Override
    public String progress() {
      return finish == null ? "waiting" : "done";
    }
  }

  public static final class CrossLanguageActivityImpl implements CrossLanguageActivity {
    @Override
    public ActivityResult run(Input input) {
      ActivityResult result = new ActivityResult();
      result.id = input.id;
      result.secret = input.secret;
      result.activityLanguage = LANGUAGE;
      return result;
    }
  }
}
