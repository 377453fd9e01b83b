package io.github.temporalkms.kmscodec;

import com.github.benmanes.caffeine.cache.AsyncCache;
import io.temporal.workflow.unsafe.WorkflowUnsafe;
import java.util.concurrent.CompletableFuture;
import java.util.function.Supplier;

/**
 * Single-flight loading over a Caffeine {@link AsyncCache}: the first caller to miss a key puts an
 * incomplete future into the cache and loads the value on its own thread; concurrent callers for
 * the same key find that future and wait for it. A failed load is handed to the callers waiting
 * for it and removed from the cache, so nothing but a success is ever cached.
 *
 * <p>Futures complete normally with an {@link Outcome}, failures included, so that Caffeine does
 * not log every KMS failure as a failed asynchronous load.
 */
final class Flights {
  private Flights() {}

  /** A load's value or the exception it failed with. */
  static final class Outcome<V> {
    final V value;
    final RuntimeException error;

    private Outcome(V value, RuntimeException error) {
      this.value = value;
      this.error = error;
    }

    static <V> CompletableFuture<Outcome<V>> of(V value) {
      return CompletableFuture.completedFuture(new Outcome<>(value, null));
    }
  }

  /** The future of {@code key}, loading it with {@code loader} if nobody has. */
  static <K, V> CompletableFuture<Outcome<V>> getOrLoad(
      AsyncCache<K, Outcome<V>> cache, K key, Supplier<V> loader) {
    CompletableFuture<Outcome<V>> existing = cache.getIfPresent(key);
    if (existing != null) {
      return existing;
    }
    CompletableFuture<Outcome<V>> mine = new CompletableFuture<>();
    CompletableFuture<Outcome<V>> flight = cache.get(key, (k, executor) -> mine);
    if (flight == mine) {
      try {
        mine.complete(new Outcome<>(loader.get(), null));
      } catch (RuntimeException e) {
        cache.asMap().remove(key, mine);
        mine.complete(new Outcome<>(null, e));
      } catch (Error e) {
        cache.asMap().remove(key, mine);
        mine.completeExceptionally(e);
        throw e;
      }
    }
    return flight;
  }

  /**
   * The value of {@code flight}, waiting for another caller's load if needed (each load is bounded
   * by the KMS timeout). Rethrows the load's exception; a {@link KmsCallException} is copied so
   * that callers sharing one flight never share one exception object.
   */
  static <V> V await(CompletableFuture<Outcome<V>> flight) {
    Outcome<V> outcome;
    if (flight.isDone() || !WorkflowUnsafe.isWorkflowThread()) {
      outcome = flight.join();
    } else {
      // Waiting for KMS in a workflow thread can take longer than the SDK's deadlock detector
      // allows (one second); the wait is bounded by the KMS timeout instead.
      outcome = WorkflowUnsafe.deadlockDetectorOff(flight::join);
    }
    if (outcome.error == null) {
      return outcome.value;
    }
    if (outcome.error instanceof KmsCallException) {
      throw ((KmsCallException) outcome.error).copy();
    }
    throw outcome.error;
  }
}
