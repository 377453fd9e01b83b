package io.github.temporalkms.kmscodec;

/** A payload marked kms-envelope-v1 has a missing, empty or oversized field, data too short to hold an envelope, an encryption context that is not the canonical JSON of an object of strings, or a plaintext that is not a payload. No KMS call is made for it. */
public final class MalformedPayloadException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  MalformedPayloadException(String message) {
    super(message);
  }

  MalformedPayloadException(String message, Throwable cause) {
    super(message, cause);
  }
}
