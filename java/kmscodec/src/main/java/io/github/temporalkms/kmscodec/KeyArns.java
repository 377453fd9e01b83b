package io.github.temporalkms.kmscodec;

import java.util.regex.Pattern;

/** Tells a KMS key ARN from a key ID, alias name or alias ARN. */
final class KeyArns {
  // arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID
  private static final Pattern KEY_ARN = Pattern.compile("arn:[^:]+:kms:[^:]*:[^:]*:key/.+");

  private KeyArns() {}

  /**
   * Whether {@code id} is the ARN of a KMS key, as opposed to a bare key ID, an alias name or an
   * alias ARN, which have to be resolved through KMS before the key ARN is known.
   */
  static boolean isKeyArn(String id) {
    return id != null && KEY_ARN.matcher(id).matches();
  }
}
