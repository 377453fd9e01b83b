package io.github.temporalkms.kmscodec;

import com.github.benmanes.caffeine.cache.AsyncCache;
import com.github.benmanes.caffeine.cache.Cache;
import com.github.benmanes.caffeine.cache.Caffeine;
import com.github.benmanes.caffeine.cache.Ticker;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;

/**
 * Unwrapped data keys, keyed by the identity (AAD) of the wrapped key, in a bounded cache with
 * expiry; calls KMS Decrypt (once for all concurrent callers) for a wrapped key it does not hold,
 * trying the next of its {@link DecryptRoutes} targets only after a transient failure. The cache
 * key stays the identity whichever replica unwraps, since the AAD names the payload's key ARN.
 * KMS refusing a wrapped key (not a transient failure) is remembered for a short while, so a flood
 * of payloads with one bad wrapped key costs one KMS call, not one per payload.
 */
final class DecryptionKeys {
  static final Duration NEGATIVE_TTL = Duration.ofSeconds(10);
  static final int NEGATIVE_SIZE = 1024;

  private final DecryptRoutes routes;
  private final AsyncCache<String, Flights.Outcome<byte[]>> keys;
  private final Cache<String, KmsCallException> refusals;

  DecryptionKeys(DecryptRoutes routes, long size, Duration ttl, Ticker ticker) {
    this.routes = routes;
    this.keys =
        Caffeine.newBuilder()
            .maximumSize(size)
            .expireAfterWrite(ttl)
            .ticker(ticker)
            .executor(Runnable::run)
            .buildAsync();
    this.refusals =
        Caffeine.newBuilder()
            .maximumSize(NEGATIVE_SIZE)
            .expireAfterWrite(NEGATIVE_TTL)
            .ticker(ticker)
            .executor(Runnable::run)
            .build();
  }

  /** The data key of {@code env}, from the cache or from KMS. The caller must not modify it. */
  byte[] get(Envelope env) {
    CompletableFuture<Flights.Outcome<byte[]>> cached = keys.getIfPresent(env.identity);
    if (cached != null && cached.isDone() && cached.join().error == null) {
      return cached.join().value;
    }
    KmsCallException refused = refusals.getIfPresent(env.identity);
    if (refused != null) {
      throw refused.copy();
    }
    // Parsed here, by each caller, so that a malformed context fails its own caller only.
    Map<String, String> context = env.encryptionContext();
    return Flights.await(Flights.getOrLoad(keys, env.identity, () -> unwrap(env, context)));
  }

  private byte[] unwrap(Envelope env, Map<String, String> context) {
    // A flight that just ended may have been refused; do not ask again.
    KmsCallException refused = refusals.getIfPresent(env.identity);
    if (refused != null) {
      throw refused;
    }
    KmsCallException failure = null;
    for (DecryptRoutes.Target target : routes.route(env.keyArn)) {
      try {
        return target.kms().decrypt(target.keyArn(), env.wrappedKey, context);
      } catch (KmsCallException e) {
        if (!e.isTransient()) {
          // A refusal is final: another replica would refuse the same request.
          refusals.put(env.identity, e);
          throw e;
        }
        if (failure != null) {
          e.addSuppressed(failure);
        }
        failure = e;
      }
    }
    throw failure;
  }

  /**
   * Puts a data key the codec just generated into the cache, so reading back its own payloads
   * costs no KMS call. {@code plaintext} is copied.
   */
  void add(String identity, byte[] plaintext) {
    keys.put(identity, Flights.Outcome.of(plaintext.clone()));
  }
}
