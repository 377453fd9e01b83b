package io.github.temporalkms.kmscodec.crosslang;

import com.fasterxml.jackson.databind.ObjectMapper;
import io.github.temporalkms.kmscodec.KmsPayloadCodec;
import io.temporal.client.WorkflowClient;
import io.temporal.client.WorkflowClientOptions;
import io.temporal.client.WorkflowOptions;
import io.temporal.client.WorkflowStub;
import io.temporal.serviceclient.WorkflowServiceStubs;
import io.temporal.serviceclient.WorkflowServiceStubsOptions;
import io.temporal.worker.Worker;
import io.temporal.worker.WorkerFactory;
import java.net.URI;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeSet;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import software.amazon.awssdk.auth.credentials.EnvironmentVariableCredentialsProvider;
import software.amazon.awssdk.regions.Region;
import software.amazon.awssdk.services.kms.KmsClient;

/**
 * The Java side of the mixed-language integration tests: {@code worker} runs the workflow and
 * activity of {@link CrossLanguage} on {@code TASK_QUEUE}; {@code starter} runs {@code
 * WORKFLOW_COUNT} workflows through whichever worker polls it. Both encrypt with kmscodec, keys in
 * the KMS at {@code KMS_ENDPOINT}.
 */
public final class Main {
  /** How long a workflow may take to reach its signal wait: generous, for loaded test machines. */
  private static final Duration QUERY_DEADLINE = Duration.ofMinutes(3);

  private Main() {}

  public static void main(String[] args) throws Exception {
    if (args.length != 1 || !(args[0].equals("worker") || args[0].equals("starter"))) {
      System.err.println("usage: crosslang worker|starter (configured by environment)");
      System.exit(2);
    }
    String namespace = env("TEMPORAL_NAMESPACE");
    KmsClient kms =
        KmsClient.builder()
            .endpointOverride(URI.create(env("KMS_ENDPOINT")))
            .region(Region.of(env("AWS_REGION")))
            .credentialsProvider(EnvironmentVariableCredentialsProvider.create())
            .build();
    KmsPayloadCodec codec =
        KmsPayloadCodec.newBuilder()
            .kmsClient(kms)
            .keyId(env("KMS_KEY_ID"))
            .namespace(namespace)
            .build();
    WorkflowServiceStubs service =
        WorkflowServiceStubs.newServiceStubs(
            WorkflowServiceStubsOptions.newBuilder().setTarget(env("TEMPORAL_ADDRESS")).build());
    WorkflowClient client =
        WorkflowClient.newInstance(
            service,
            WorkflowClientOptions.newBuilder()
                .setNamespace(namespace)
                .setDataConverter(codec.newDataConverter())
                .build());
    if (args[0].equals("worker")) {
      runWorker(client, env("TASK_QUEUE"));
    } else {
      int status = runStarter(client);
      service.shutdown();
      System.exit(status);
    }
  }

  private static String env(String name) {
    String v = System.getenv(name);
    if (v == null || v.isEmpty()) {
      System.err.println("crosslang: environment variable " + name + " is required");
      System.exit(2);
    }
    return v;
  }

  private static void runWorker(WorkflowClient client, String taskQueue) throws InterruptedException {
    WorkerFactory factory = WorkerFactory.newInstance(client);
    Worker worker = factory.newWorker(taskQueue);
    worker.registerWorkflowImplementationTypes(CrossLanguage.CrossLanguageWorkflowImpl.class);
    worker.registerActivitiesImplementations(new CrossLanguage.CrossLanguageActivityImpl());
    CountDownLatch stopped = new CountDownLatch(1);
    Runtime.getRuntime()
        .addShutdownHook(
            new Thread(
                () -> {
                  // SIGTERM or SIGINT: finish in-flight tasks, then exit 0 rather than the JVM's
                  // 128+signal.
                  factory.shutdown();
                  factory.awaitTermination(10, TimeUnit.SECONDS);
                  client.getWorkflowServiceStubs().shutdown();
                  stopped.countDown();
                  Runtime.getRuntime().halt(0);
                }));
    factory.start();
    System.out.println("ready");
    System.out.flush();
    stopped.await();
  }

  /** Runs the workflows; returns the exit status. */
  private static int runStarter(WorkflowClient client) throws Exception {
    String taskQueue = env("TASK_QUEUE");
    String prefix = env("WORKFLOW_ID_PREFIX");
    int count = Integer.parseInt(env("WORKFLOW_COUNT"));
    ExecutorService pool = Executors.newFixedThreadPool(Math.min(count, 64));
    try {
      List<CompletableFuture<CrossLanguage.Result>> runs = new ArrayList<>();
      for (int i = 0; i < count; i++) {
        String id = prefix + "-" + i;
        runs.add(CompletableFuture.supplyAsync(() -> runOne(client, taskQueue, id), pool));
      }
      TreeSet<String> workflowLanguages = new TreeSet<>();
      TreeSet<String> activityLanguages = new TreeSet<>();
      int completed = 0;
      List<String> failures = new ArrayList<>();
      for (CompletableFuture<CrossLanguage.Result> run : runs) {
        try {
          CrossLanguage.Result r = run.join();
          workflowLanguages.add(r.workflowLanguage);
          activityLanguages.add(r.activityLanguage);
          completed++;
        } catch (RuntimeException e) {
          Throwable cause = e.getCause() == null ? e : e.getCause();
          failures.add(describe(cause));
        }
      }
      if (!failures.isEmpty()) {
        System.err.println(
            "crosslang starter: " + failures.size() + " of " + count + " workflows failed; first: "
                + failures.get(0));
        return 1;
      }
      Map<String, Object> summary = new LinkedHashMap<>();
      summary.put("completed", completed);
      summary.put("workflow_languages", new ArrayList<>(workflowLanguages));
      summary.put("activity_languages", new ArrayList<>(activityLanguages));
      System.out.println(new ObjectMapper().writeValueAsString(summary));
      return 0;
    } finally {
      pool.shutdownNow();
    }
  }

  /** An exception and its causes, one line. */
  private static String describe(Throwable e) {
    StringBuilder b = new StringBuilder(e.toString());
    for (Throwable c = e.getCause(); c != null && c != e; c = c.getCause()) {
      b.append(" <- ").append(c);
      e = c;
    }
    return b.toString();
  }

  private static CrossLanguage.Result runOne(WorkflowClient client, String taskQueue, String id) {
    WorkflowStub stub =
        client.newUntypedWorkflowStub(
            "CrossLanguageWorkflow",
            WorkflowOptions.newBuilder().setWorkflowId(id).setTaskQueue(taskQueue).build());
    String secret = "s3cret-" + id;
    stub.start(new CrossLanguage.Input(id, secret));
    awaitWaiting(stub, id);
    String note = "from-" + CrossLanguage.LANGUAGE;
    stub.signal("finish", new CrossLanguage.Finish(note));
    CrossLanguage.Result r = stub.getResult(CrossLanguage.Result.class);
    check(id, "id", id, r.id);
    check(id, "secret", secret, r.secret);
    check(id, "note", note, r.note);
    if (r.workflowLanguage == null || r.activityLanguage == null) {
      throw new IllegalStateException(id + ": result names no workflow or activity language");
    }
    String expected = System.getenv("WORKER_LANGUAGE");
    if (expected != null && !expected.isEmpty()) {
      check(id, "workflow_language", expected, r.workflowLanguage);
      check(id, "activity_language", expected, r.activityLanguage);
    }
    return r;
  }

  /** Queries {@code progress} until the workflow waits for its signal. */
  private static void awaitWaiting(WorkflowStub stub, String id) {
    long deadline = System.nanoTime() + QUERY_DEADLINE.toNanos();
    RuntimeException last = null;
    while (System.nanoTime() < deadline) {
      try {
        if ("waiting".equals(stub.query("progress", String.class))) {
          return;
        }
      } catch (RuntimeException e) {
        last = e; // the first workflow task may not have run yet
      }
      try {
        Thread.sleep(200);
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
        throw new IllegalStateException(id + ": interrupted", e);
      }
    }
    throw new IllegalStateException(
        id + ": progress never became \"waiting\" within " + QUERY_DEADLINE, last);
  }

  private static void check(String id, String field, String want, String got) {
    if (!want.equals(got)) {
      throw new IllegalStateException(
          id + ": result." + field + " is \"" + got + "\", want \"" + want + "\"");
    }
  }
}
