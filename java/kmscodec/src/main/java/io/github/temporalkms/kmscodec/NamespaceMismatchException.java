package io.github.temporalkms.kmscodec;

/** {@code requireSameNamespace} is set and the payload's encryption context names another namespace than the one the codec decodes for. No KMS call is made for it. */
public final class NamespaceMismatchException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  NamespaceMismatchException(String message) {
    super(message);
  }

  NamespaceMismatchException(String message, Throwable cause) {
    super(message, cause);
  }
}
