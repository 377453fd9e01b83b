package io.github.temporalkms.kmscodec;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.GeneralSecurityException;
import java.security.InvalidAlgorithmParameterException;
import java.util.Arrays;
import javax.crypto.AEADBadTagException;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;

/**
 * The payload key and commitment of one payload, derived from a data key and the payload's salt:
 *
 * <pre>
 * PRK         = HKDF-Extract(salt, data key)
 * payload key = HKDF-Expand(PRK, "kms-envelope-v1 derive", 32)
 * commitment  = HKDF-Expand(PRK, "kms-envelope-v1 commit", 32)
 * </pre>
 *
 * <p>The payload key is unique to the payload (a fresh 32-byte salt), which is why a fixed
 * all-zero nonce is safe: no key ever encrypts twice.
 */
final class PayloadKeys {
  private static final byte[] INFO_PAYLOAD_KEY =
      (Envelope.FORMAT + " derive").getBytes(StandardCharsets.US_ASCII);
  private static final byte[] INFO_COMMITMENT =
      (Envelope.FORMAT + " commit").getBytes(StandardCharsets.US_ASCII);
  private static final String AES_GCM = "AES/GCM/NoPadding";
  private static final int TAG_BITS = Envelope.TAG_SIZE * 8;
  private static final GCMParameterSpec ZERO_NONCE = new GCMParameterSpec(TAG_BITS, new byte[12]);

  /** A Cipher per thread: looking one up costs more than sealing a small payload. */
  private static final ThreadLocal<Cipher> CIPHER = ThreadLocal.withInitial(PayloadKeys::newCipher);

  final byte[] commitment;
  private final SecretKeySpec payloadKey;

  private PayloadKeys(byte[] payloadKey, byte[] commitment) {
    this.payloadKey = new SecretKeySpec(payloadKey, "AES");
    this.commitment = commitment;
    Arrays.fill(payloadKey, (byte) 0);
  }

  static PayloadKeys derive(byte[] dataKey, byte[] salt) {
    if (dataKey.length != Envelope.DATA_KEY_SIZE) {
      throw new IllegalArgumentException(
          "data key is " + dataKey.length + " bytes, want " + Envelope.DATA_KEY_SIZE);
    }
    byte[] prk = Hkdf.extract(salt, dataKey);
    try {
      // Each output is one hash block: HKDF-Expand is a single HMAC of info || 0x01.
      return new PayloadKeys(
          Hkdf.expand(prk, INFO_PAYLOAD_KEY, Hkdf.HASH_LENGTH),
          Hkdf.expand(prk, INFO_COMMITMENT, Hkdf.HASH_LENGTH));
    } finally {
      Arrays.fill(prk, (byte) 0);
    }
  }

  /** Encrypts {@code plaintext} into {@code out} from {@code offset}: ciphertext, then tag. */
  void seal(byte[] plaintext, byte[] out, int offset, byte[] aad) {
    try {
      Cipher cipher = init(Cipher.ENCRYPT_MODE);
      cipher.updateAAD(aad);
      cipher.doFinal(plaintext, 0, plaintext.length, out, offset);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("AES-GCM encryption failed", e);
    }
  }

  /** Decrypts and verifies {@code ciphertext} (with its tag). */
  byte[] open(ByteBuffer ciphertext, byte[] aad) {
    try {
      Cipher cipher = init(Cipher.DECRYPT_MODE);
      cipher.updateAAD(aad);
      ByteBuffer out = ByteBuffer.allocate(cipher.getOutputSize(ciphertext.remaining()));
      cipher.doFinal(ciphertext, out);
      return out.position() == out.capacity() ? out.array() : Arrays.copyOf(out.array(), out.position());
    } catch (AEADBadTagException e) {
      throw new AuthenticationFailedException("AES-GCM tag does not verify");
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("AES-GCM decryption failed", e);
    }
  }

  private Cipher init(int mode) throws GeneralSecurityException {
    Cipher cipher = CIPHER.get();
    try {
      cipher.init(mode, payloadKey, ZERO_NONCE);
    } catch (InvalidAlgorithmParameterException e) {
      // The JDK refuses to encrypt twice in a row under one key and nonce on one Cipher. Only a
      // repeated salt (a test's fixed one) gets here; a fresh Cipher does what is asked.
      cipher = newCipher();
      CIPHER.set(cipher);
      cipher.init(mode, payloadKey, ZERO_NONCE);
    }
    return cipher;
  }

  private static Cipher newCipher() {
    try {
      return Cipher.getInstance(AES_GCM);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("the JDK has no " + AES_GCM, e);
    }
  }
}
