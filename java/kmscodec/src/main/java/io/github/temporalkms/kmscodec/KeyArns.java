package io.github.temporalkms.kmscodec;

import java.util.Optional;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Tells a KMS key ARN from a key ID, alias name or alias ARN, and says which key ARNs name the
 * same key: the replicas of a multi-Region key (key ID {@code mrk-...}) in every region of one
 * partition and account, as docs/FORMAT.md's "Multi-Region keys" defines.
 */
final class KeyArns {
  // arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID
  private static final Pattern KEY_ARN =
      Pattern.compile("arn:([^:]+):kms:([^:]*):([^:]*):key/(.+)");
  private static final String MULTI_REGION_PREFIX = "mrk-";

  /** The parts of a key ARN. */
  record KeyArn(String partition, String region, String account, String keyId) {
    /** Whether this is a multi-Region key, whose replicas share its key ID in other regions. */
    boolean isMultiRegion() {
      return keyId.startsWith(MULTI_REGION_PREFIX);
    }

    /** The ARN of the same key ID in {@code region}: a replica, if this is multi-Region. */
    KeyArn inRegion(String region) {
      return new KeyArn(partition, region, account, keyId);
    }

    /**
     * Whether {@code other} names this key: the same ARN, or both multi-Region with the same
     * partition, account and key ID.
     */
    boolean sameKey(KeyArn other) {
      return equals(other)
          || (isMultiRegion() && other.isMultiRegion() && inRegion("").equals(other.inRegion("")));
    }

    @Override
    public String toString() {
      return "arn:" + partition + ":kms:" + region + ":" + account + ":key/" + keyId;
    }
  }

  private KeyArns() {}

  /** The parts of {@code id} if it is a key ARN; empty for anything else. */
  static Optional<KeyArn> parse(String id) {
    if (id == null) {
      return Optional.empty();
    }
    Matcher m = KEY_ARN.matcher(id);
    if (!m.matches()) {
      return Optional.empty();
    }
    return Optional.of(new KeyArn(m.group(1), m.group(2), m.group(3), m.group(4)));
  }

  /**
   * Whether {@code id} is the ARN of a KMS key, as opposed to a bare key ID, an alias name or an
   * alias ARN, which have to be resolved through KMS before the key ARN is known.
   */
  static boolean isKeyArn(String id) {
    return id != null && KEY_ARN.matcher(id).matches();
  }

  /**
   * Whether {@code a} and {@code b} name the same key: equal strings, or key ARNs of replicas of
   * one multi-Region key. Anything that is not a key ARN matches only itself.
   */
  static boolean sameKey(String a, String b) {
    if (a.equals(b)) {
      return true;
    }
    Optional<KeyArn> x = parse(a);
    Optional<KeyArn> y = parse(b);
    return x.isPresent() && y.isPresent() && x.get().sameKey(y.get());
  }
}
