package io.github.temporalkms.kmscodec;

import io.temporal.workflow.unsafe.WorkflowUnsafe;
import java.time.Duration;
import java.util.Arrays;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import software.amazon.awssdk.awscore.AwsRequestOverrideConfiguration;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.services.kms.KmsClient;
import software.amazon.awssdk.services.kms.model.DataKeySpec;
import software.amazon.awssdk.services.kms.model.DecryptRequest;
import software.amazon.awssdk.services.kms.model.DecryptResponse;
import software.amazon.awssdk.services.kms.model.DescribeKeyRequest;
import software.amazon.awssdk.services.kms.model.DescribeKeyResponse;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyRequest;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyResponse;

/**
 * The three KMS calls the codec makes, each bounded by the KMS timeout twice over: the AWS SDK's
 * {@code apiCallTimeout} (retries included), and a wait of that long for the call, which runs on
 * a daemon thread of its own so that not even a client that ignores its timeout can hold the
 * caller longer. Answers are checked before they are used.
 */
final class KmsCalls {
  private static final ExecutorService CALLS =
      Executors.newCachedThreadPool(
          new java.util.concurrent.ThreadFactory() {
            private final AtomicInteger n = new AtomicInteger();

            @Override
            public Thread newThread(Runnable r) {
              Thread t = new Thread(r, "kmscodec-kms-" + n.incrementAndGet());
              t.setDaemon(true);
              return t;
            }
          });

  /** A data key that GenerateDataKey returned. */
  static final class GeneratedKey {
    final String keyArn;
    final byte[] plaintext;
    final byte[] wrapped;

    GeneratedKey(String keyArn, byte[] plaintext, byte[] wrapped) {
      this.keyArn = keyArn;
      this.plaintext = plaintext;
      this.wrapped = wrapped;
    }
  }

  private final KmsClient kms;
  private final Duration timeout;
  private final AwsRequestOverrideConfiguration overrides;

  KmsCalls(KmsClient kms, Duration timeout) {
    this.kms = kms;
    this.timeout = timeout;
    this.overrides = AwsRequestOverrideConfiguration.builder().apiCallTimeout(timeout).build();
  }

  GeneratedKey generateDataKey(String keyId, Map<String, String> context) {
    GenerateDataKeyRequest request =
        GenerateDataKeyRequest.builder()
            .keyId(keyId)
            .keySpec(DataKeySpec.AES_256)
            .encryptionContext(context)
            .overrideConfiguration(overrides)
            .build();
    return call(
        "GenerateDataKey",
        keyId,
        () -> {
          GenerateDataKeyResponse out = kms.generateDataKey(request);
          String arn = out.keyId();
          byte[] plaintext = bytes(out.plaintext());
          byte[] wrapped = bytes(out.ciphertextBlob());
          if (!KeyArns.isKeyArn(arn) || arn.length() > Envelope.MAX_KEY_ARN_SIZE) {
            throw new InvalidKmsResponseException("KeyId is not a key ARN");
          }
          checkDataKey(plaintext);
          if (wrapped.length == 0 || wrapped.length > Envelope.MAX_WRAPPED_KEY_SIZE) {
            throw new InvalidKmsResponseException(
                "CiphertextBlob is " + wrapped.length + " bytes");
          }
          return new GeneratedKey(arn, plaintext, wrapped);
        });
  }

  byte[] decrypt(String keyArn, byte[] wrappedKey, Map<String, String> context) {
    DecryptRequest request =
        DecryptRequest.builder()
            // Naming the key makes KMS refuse a wrapped key of any other key, rather than
            // trusting the payload's claim.
            .keyId(keyArn)
            .ciphertextBlob(SdkBytes.fromByteArray(wrappedKey))
            .encryptionContext(context)
            .overrideConfiguration(overrides)
            .build();
    return call(
        "Decrypt",
        keyArn,
        () -> {
          DecryptResponse out = kms.decrypt(request);
          byte[] plaintext = bytes(out.plaintext());
          if (!keyArn.equals(out.keyId())) {
            Arrays.fill(plaintext, (byte) 0);
            throw new InvalidKmsResponseException(
                "decrypted with key \"" + out.keyId() + "\", not the key asked for");
          }
          checkDataKey(plaintext);
          return plaintext;
        });
  }

  String describeKey(String keyId) {
    DescribeKeyRequest request =
        DescribeKeyRequest.builder().keyId(keyId).overrideConfiguration(overrides).build();
    return call(
        "DescribeKey",
        keyId,
        () -> {
          DescribeKeyResponse out = kms.describeKey(request);
          String arn = out.keyMetadata() == null ? null : out.keyMetadata().arn();
          if (!KeyArns.isKeyArn(arn)) {
            throw new InvalidKmsResponseException("DescribeKey returned no key ARN");
          }
          return arn;
        });
  }

  private <T> T call(String operation, String keyId, Callable<T> call) {
    Future<T> future = CALLS.submit(call);
    if (WorkflowUnsafe.isWorkflowThread()) {
      // The wait is bounded by the KMS timeout, which may exceed the deadlock detector's one
      // second.
      return WorkflowUnsafe.deadlockDetectorOff(() -> waitFor(future, operation, keyId));
    }
    return waitFor(future, operation, keyId);
  }

  private <T> T waitFor(Future<T> future, String operation, String keyId) {
    try {
      return future.get(timeout.toNanos(), TimeUnit.NANOSECONDS);
    } catch (ExecutionException e) {
      throw new KmsCallException(operation, keyId, e.getCause());
    } catch (TimeoutException e) {
      future.cancel(true);
      throw new KmsCallException(operation, keyId, e);
    } catch (InterruptedException e) {
      future.cancel(true);
      Thread.currentThread().interrupt();
      throw new KmsCallException(operation, keyId, e);
    }
  }

  private static void checkDataKey(byte[] plaintext) {
    if (plaintext.length != Envelope.DATA_KEY_SIZE) {
      Arrays.fill(plaintext, (byte) 0);
      throw new InvalidKmsResponseException(
          "plaintext data key is " + plaintext.length + " bytes, want " + Envelope.DATA_KEY_SIZE);
    }
  }

  private static byte[] bytes(SdkBytes b) {
    return b == null ? new byte[0] : b.asByteArray();
  }
}
