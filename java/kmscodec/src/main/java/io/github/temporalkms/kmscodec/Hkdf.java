package io.github.temporalkms.kmscodec;

import java.security.GeneralSecurityException;
import java.security.NoSuchAlgorithmException;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

/**
 * HKDF with HMAC-SHA256 (RFC 5869), over the JDK's {@link Mac}. A {@code Mac} is kept per thread,
 * because looking one up costs more than the HMACs of a small payload.
 */
final class Hkdf {
  static final int HASH_LENGTH = 32;
  private static final String HMAC_SHA256 = "HmacSHA256";
  private static final ThreadLocal<Mac> MAC = ThreadLocal.withInitial(Hkdf::newMac);

  private Hkdf() {}

  /** HKDF-Extract: the pseudorandom key of {@code ikm} with {@code salt}. */
  static byte[] extract(byte[] salt, byte[] ikm) {
    Mac mac = keyed(salt.length == 0 ? new byte[HASH_LENGTH] : salt);
    return mac.doFinal(ikm);
  }

  /** HKDF-Expand: {@code length} bytes of output keying material from {@code prk} and {@code info}. */
  static byte[] expand(byte[] prk, byte[] info, int length) {
    if (length < 0 || length > 255 * HASH_LENGTH) {
      throw new IllegalArgumentException("HKDF-Expand length out of range: " + length);
    }
    Mac mac = keyed(prk);
    byte[] out = new byte[length];
    byte[] block = new byte[0];
    int done = 0;
    for (int counter = 1; done < length; counter++) {
      mac.update(block);
      mac.update(info);
      mac.update((byte) counter);
      block = mac.doFinal();
      int n = Math.min(block.length, length - done);
      System.arraycopy(block, 0, out, done, n);
      done += n;
    }
    return out;
  }

  private static Mac keyed(byte[] key) {
    Mac mac = MAC.get();
    try {
      mac.init(new SecretKeySpec(key, HMAC_SHA256));
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException("HMAC-SHA256 refused a key", e);
    }
    return mac;
  }

  private static Mac newMac() {
    try {
      return Mac.getInstance(HMAC_SHA256);
    } catch (NoSuchAlgorithmException e) {
      throw new IllegalStateException("the JDK has no HmacSHA256", e);
    }
  }
}
