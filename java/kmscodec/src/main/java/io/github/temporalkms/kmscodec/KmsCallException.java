package io.github.temporalkms.kmscodec;

import java.util.Set;
import java.util.concurrent.TimeoutException;
import software.amazon.awssdk.awscore.exception.AwsServiceException;

/**
 * A failed KMS call: the AWS SDK's exception (or a timeout) is the cause. {@link #isTransient()}
 * tells a failure that a later retry may cure (throttling, KMS faults, time-outs, network errors)
 * from KMS refusing the request itself (access denied, invalid ciphertext, disabled key) or
 * answering with something unusable.
 *
 * <p>Temporal retries a workflow task that fails with it; a payload is never written unencrypted
 * because KMS failed.
 */
public final class KmsCallException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  private static final Set<String> TRANSIENT_CODES =
      Set.of(
          "ThrottlingException",
          "TooManyRequestsException",
          "RequestLimitExceeded",
          "LimitExceededException",
          "KMSInternalException",
          "DependencyTimeoutException");

  private static final Set<String> REFUSED_CIPHERTEXT_CODES =
      Set.of("InvalidCiphertextException", "IncorrectKeyException");

  private final String operation;
  private final String keyId;

  KmsCallException(String operation, String keyId, Throwable cause) {
    super("kms " + operation + " (key " + keyId + "): " + describe(cause), cause);
    this.operation = operation;
    this.keyId = keyId;
  }

  /** The KMS operation: {@code GenerateDataKey}, {@code Decrypt} or {@code DescribeKey}. */
  public String operation() {
    return operation;
  }

  /** The key ID, alias or key ARN the call named. */
  public String keyId() {
    return keyId;
  }

  /**
   * Whether retrying the same call later may succeed: throttling, KMS-side faults, time-outs and
   * network errors. KMS rejecting the request itself, or answering with something unusable, is
   * not transient.
   */
  public boolean isTransient() {
    Throwable cause = getCause();
    if (cause instanceof InvalidKmsResponseException) {
      return false;
    }
    if (cause instanceof AwsServiceException) {
      AwsServiceException e = (AwsServiceException) cause;
      String code = e.awsErrorDetails() == null ? null : e.awsErrorDetails().errorCode();
      if (code != null && TRANSIENT_CODES.contains(code)) {
        return true;
      }
      return e.statusCode() >= 500 || e.isThrottlingException();
    }
    // A time-out, an interrupted wait or a broken connection (SdkClientException).
    return true;
  }

  /**
   * Whether KMS answered a {@code Decrypt} by refusing the wrapped data key itself ({@code
   * InvalidCiphertextException}, or {@code IncorrectKeyException} for a blob made under another
   * key): the payload that carries it was altered or does not belong to the key and context it
   * names.
   */
  public boolean isRefusedCiphertext() {
    if (!"Decrypt".equals(operation) || !(getCause() instanceof AwsServiceException)) {
      return false;
    }
    AwsServiceException e = (AwsServiceException) getCause();
    return e.awsErrorDetails() != null
        && REFUSED_CIPHERTEXT_CODES.contains(e.awsErrorDetails().errorCode());
  }

  /** A copy for another caller, so that a remembered failure is never shared between throws. */
  KmsCallException copy() {
    return new KmsCallException(operation, keyId, getCause());
  }

  private static String describe(Throwable cause) {
    if (cause instanceof AwsServiceException) {
      AwsServiceException e = (AwsServiceException) cause;
      String code = e.awsErrorDetails() == null ? null : e.awsErrorDetails().errorCode();
      return (code == null ? cause.getClass().getSimpleName() : code)
          + " (status " + e.statusCode() + ")";
    }
    if (cause instanceof TimeoutException) {
      return "no answer within the KMS timeout";
    }
    return cause.getClass().getSimpleName() + ": " + cause.getMessage();
  }
}
