package io.github.temporalkms.kmscodec;

import com.github.benmanes.caffeine.cache.AsyncCache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Ticker;
import java.time.Duration;

/**
 * Learns the key ARN that the configured key ID stands for. Payloads name their master key by
 * ARN, but users may configure an alias or a bare key ID; a worker that starts by replaying
 * history must know its key's ARN before it has encrypted anything, and an alias may move to a
 * new key at any time, so the ARN is asked of KMS (DescribeKey) and kept for a limited time. A key
 * ARN resolves to itself without a call.
 */
final class KeyResolver {
  private static final String KEY = "";

  private final String keyId;
  private final KmsCalls kms;
  private final AsyncCache<String, Flights.Outcome<String>> current;

  KeyResolver(String keyId, KmsCalls kms, Duration ttl, Ticker ticker) {
    this.keyId = keyId;
    this.kms = kms;
    this.current =
        Caffeine.newBuilder()
            .maximumSize(1)
            .expireAfterWrite(ttl)
            .ticker(ticker)
            .executor(Runnable::run)
            .buildAsync();
  }

  /** The key ARN that the key ID stands for now. */
  String arn() {
    if (KeyArns.isKeyArn(keyId)) {
      return keyId;
    }
    return Flights.await(Flights.getOrLoad(current, KEY, () -> kms.describeKey(keyId)));
  }

  /** Records {@code arn} as what the key ID stands for, as GenerateDataKey reported it. */
  void observe(String arn) {
    current.put(KEY, Flights.Outcome.of(arn));
  }
}
