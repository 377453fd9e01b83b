package io.github.temporalkms.kmscodec;

/** {@code rejectUnencrypted} is set and a payload is not encrypted. */
public final class UnencryptedPayloadException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  UnencryptedPayloadException(String message) {
    super(message);
  }

  UnencryptedPayloadException(String message, Throwable cause) {
    super(message, cause);
  }
}
