package io.github.temporalkms.kmscodec;

import java.util.Map;

/**
 * What a data key for encryption is generated for: one KMS key, named as configured, and one
 * encryption context. Its {@link #id} is the cache key.
 */
final class Scope {
  final String keyId;
  /** Sorted, unmodifiable. */
  final Map<String, String> context;

  final String id;

  Scope(String keyId, Map<String, String> context) {
    this.keyId = keyId;
    this.context = EncryptionContextJson.sorted(context);
    // Length prefixes make the identity unambiguous whatever the strings hold.
    StringBuilder b = new StringBuilder();
    b.append(keyId.length()).append(':').append(keyId);
    for (Map.Entry<String, String> e : this.context.entrySet()) {
      b.append(e.getKey().length()).append(':').append(e.getKey());
      b.append(e.getValue().length()).append(':').append(e.getValue());
    }
    this.id = b.toString();
  }
}
