package io.github.temporalkms.kmscodec;

import com.github.benmanes.caffeine.cache.AsyncCache;
import com.github.benmanes.caffeine.cache.Caffeine;
import java.time.Clock;
import java.time.Duration;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Function;

/**
 * Hands out data keys for encryption, one per scope at a time, each reused within a maximum age,
 * payload count and byte count, and calls KMS GenerateDataKey (once for all concurrent callers of
 * a scope) when a scope has none within its limits.
 */
final class EncryptionKeys {
  /** How many scopes (in practice, namespaces) hold a data key at once. */
  static final int MAX_SCOPES = 1024;

  /** A data key in use and what it has sealed so far. */
  static final class DataKey {
    final SealingKey key;
    private final long expiresMillis;
    private final AtomicLong uses = new AtomicLong();
    private final AtomicLong bytes = new AtomicLong();

    DataKey(SealingKey key, long expiresMillis) {
      this.key = key;
      this.expiresMillis = expiresMillis;
    }
  }

  private final Function<Scope, SealingKey> generate;
  private final Duration maxAge;
  private final long maxPayloads;
  private final long maxBytes;
  private final Clock clock;
  private final AsyncCache<String, Flights.Outcome<DataKey>> keys;

  /**
   * @param generate calls KMS for a data key of a scope and builds its sealing key
   */
  EncryptionKeys(
      Function<Scope, SealingKey> generate,
      Duration maxAge,
      long maxPayloads,
      long maxBytes,
      Clock clock) {
    this.generate = generate;
    this.maxAge = maxAge;
    this.maxPayloads = maxPayloads;
    this.maxBytes = maxBytes;
    this.clock = clock;
    this.keys = Caffeine.newBuilder().maximumSize(MAX_SCOPES).executor(Runnable::run).buildAsync();
  }

  /** Whether {@link #get} needs payload sizes. */
  boolean countsBytes() {
    return maxBytes > 0;
  }

  /** A data key of {@code scope} with room for one more payload of {@code size} bytes. */
  SealingKey get(Scope scope, long size) {
    if (maxPayloads == 1) {
      // One data key per payload: nothing to share, so nothing to wait for either.
      return generate.apply(scope);
    }
    while (true) {
      CompletableFuture<Flights.Outcome<DataKey>> flight =
          Flights.getOrLoad(keys, scope.id, () -> newDataKey(scope));
      DataKey k = Flights.await(flight);
      if (reserve(k, size)) {
        return k.key;
      }
      // Used up or expired: the first caller here removes it and starts the next flight; the
      // removal is conditional, so a fresher key put there meanwhile stays.
      keys.asMap().remove(scope.id, flight);
    }
  }

  private DataKey newDataKey(Scope scope) {
    SealingKey key = generate.apply(scope);
    return new DataKey(key, clock.millis() + maxAge.toMillis());
  }

  /** Takes one payload of {@code size} bytes from {@code k}'s allowance. */
  private boolean reserve(DataKey k, long size) {
    if (clock.millis() >= k.expiresMillis) {
      return false;
    }
    if (k.uses.incrementAndGet() > maxPayloads) {
      return false;
    }
    if (maxBytes > 0) {
      // The first payload always fits, so an oversized payload gets a key of its own instead of
      // asking KMS forever.
      long total = k.bytes.addAndGet(size);
      return total <= maxBytes || total == size;
    }
    return true;
  }
}
