package io.github.temporalkms.kmscodec;

/** The payload names a master key that is neither the key the codec encrypts with nor one of its {@code decryptKeyIds}. No KMS call is made for it. */
public final class KeyNotAllowedException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  KeyNotAllowedException(String message) {
    super(message);
  }

  KeyNotAllowedException(String message, Throwable cause) {
    super(message, cause);
  }
}
