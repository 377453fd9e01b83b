package io.github.temporalkms.kmscodec;

/**
 * KMS answered with something unusable: a plaintext data key that is not 32 bytes, or a key ARN
 * other than the one asked for. It is the cause of a {@link KmsCallException}.
 */
final class InvalidKmsResponseException extends RuntimeException {
  private static final long serialVersionUID = 1L;

  InvalidKmsResponseException(String message) {
    super("invalid response from KMS: " + message);
  }
}
