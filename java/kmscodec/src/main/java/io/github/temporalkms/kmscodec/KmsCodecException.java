package io.github.temporalkms.kmscodec;

import io.temporal.payload.codec.PayloadCodecException;

/**
 * A payload that {@link KmsPayloadCodec} could not encode or decode. Catch a subclass to tell the
 * causes apart:
 *
 * <ul>
 *   <li>{@link MalformedPayloadException}: a kms-envelope-v1 payload with a missing, empty or
 *       oversized field, or an encryption context that is not canonical JSON of strings;
 *   <li>{@link AuthenticationFailedException}: the key commitment or the AES-GCM tag did not
 *       verify;
 *   <li>{@link UnsupportedFormatException}: {@code binary/encrypted} in another encryption
 *       format;
 *   <li>{@link KeyNotAllowedException}: the payload's master key is not allowed for decryption;
 *   <li>{@link NamespaceMismatchException}: the payload belongs to another namespace;
 *   <li>{@link UnencryptedPayloadException}: a plain payload where encryption is required;
 *   <li>{@link KmsCallException}: a KMS call failed or answered with something unusable.
 * </ul>
 *
 * <p>Messages never contain payload data or key material.
 */
public abstract class KmsCodecException extends PayloadCodecException {
  private static final long serialVersionUID = 1L;

  private volatile String position = "";

  KmsCodecException(String message) {
    super(message);
  }

  KmsCodecException(String message, Throwable cause) {
    super(message, cause);
  }

  /** Records which payload of a batch failed; the codec calls it once, before throwing. */
  final KmsCodecException at(String operation, int index, int count) {
    position = operation + " payload " + (index + 1) + " of " + count + ": ";
    return this;
  }

  @Override
  public String getMessage() {
    return "kmscodec: " + position + super.getMessage();
  }
}
