package io.github.temporalkms.kmscodec;

/** The key commitment or the AES-GCM tag did not verify: the payload was altered after it was sealed, or sealed under another data key. */
public final class AuthenticationFailedException extends KmsCodecException {
  private static final long serialVersionUID = 1L;

  AuthenticationFailedException(String message) {
    super(message);
  }

  AuthenticationFailedException(String message, Throwable cause) {
    super(message, cause);
  }
}
