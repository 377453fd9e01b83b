package io.github.temporalkms.kmscodec;

import com.github.benmanes.caffeine.cache.AsyncCache;
import io.temporal.workflow.unsafe.WorkflowUnsafe;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.function.Supplier;

/**
 * Single-flight loading over a Caffeine {@link AsyncCache}: the first caller to miss a key puts an
 * incomplete future into the cache and loads the value on its own thread; concurrent callers for
 * the same key find that future and wait for it. A failed load is removed from the cache by
 * Caffeine, so nothing but a success is ever cached.
 */
final class Flights {
  private Flights() {}

  /** The future of {@code key}, loading it with {@code loader} if nobody has. */
  static <K, V> CompletableFuture<V> getOrLoad(AsyncCache<K, V> cache, K key, Supplier<V> loader) {
    CompletableFuture<V> existing = cache.getIfPresent(key);
    if (existing != null) {
      return existing;
    }
    CompletableFuture<V> mine = new CompletableFuture<>();
    CompletableFuture<V> flight = cache.get(key, (k, executor) -> mine);
    if (flight == mine) {
      try {
        mine.complete(loader.get());
      } catch (RuntimeException | Error e) {
        mine.completeExceptionally(e);
      }
    }
    return flight;
  }

  /**
   * The value of {@code future}, waiting for another caller's load if needed (each load is bounded
   * by the KMS timeout). Rethrows the load's exception; a {@link KmsCallException} is copied so
   * that callers sharing one flight never share one exception object.
   */
  static <V> V await(CompletableFuture<V> future) {
    try {
      if (future.isDone() || !WorkflowUnsafe.isWorkflowThread()) {
        return future.join();
      }
      // Waiting for KMS in a workflow thread can take longer than the SDK's deadlock detector
      // allows (one second); the wait is bounded by the KMS timeout instead.
      return WorkflowUnsafe.deadlockDetectorOff(future::join);
    } catch (CompletionException e) {
      Throwable cause = e.getCause();
      if (cause instanceof KmsCallException) {
        throw ((KmsCallException) cause).copy();
      }
      if (cause instanceof RuntimeException) {
        throw (RuntimeException) cause;
      }
      if (cause instanceof Error) {
        throw (Error) cause;
      }
      throw e;
    }
  }
}
