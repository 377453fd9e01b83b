package io.github.temporalkms.kmscodec;

/** The payload is {@code binary/encrypted} in an {@code encryption-format} this codec does not implement. Such a payload is never passed through. */
public final class UnsupportedFormatException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  UnsupportedFormatException(String message) {
    super(message);
  }

  UnsupportedFormatException(String message, Throwable cause) {
    super(message, cause);
  }
}
