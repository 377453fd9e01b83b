/**
 * The data keys that KMS generated or unwrapped, kept so that the codec
 * calls KMS once per data key rather than once per payload. Concurrent cold
 * requests for one key share one KMS call (single flight), and no cache
 * ever keeps a failure as a success.
 *
 * @module
 */

import { LRUCache } from 'lru-cache';

import { formatKeyArn, inRegion, isKeyArn, isMultiRegion, parseKeyArn } from './arn';
import type { EncryptionContext } from './context';
import { SealingKey } from './envelope';
import { KMSError } from './errors';
import type { KMS } from './kms';

/** A clock in milliseconds since the epoch, like `Date.now`. */
export type Clock = () => number;

/**
 * Shares one promise among concurrent callers of the same key: the first
 * starts the work, the others wait for its result.
 */
export class SingleFlight<T> {
  private readonly flights = new Map<string, Promise<T>>();

  do(key: string, work: () => Promise<T>): Promise<T> {
    let flight = this.flights.get(key);
    if (flight === undefined) {
      flight = work().finally(() => this.flights.delete(key));
      this.flights.set(key, flight);
    }
    return flight;
  }
}

/**
 * What a data key for encryption is generated for: one KMS key, named as
 * the user configured it, and one encryption context.
 */
export class Scope {
  /** Equal for two scopes exactly when their key ID and context are. */
  readonly id: string;

  constructor(
    readonly keyId: string,
    readonly encryptionContext: EncryptionContext,
  ) {
    // JSON of an array of strings is unambiguous whatever the strings hold.
    const names = Object.keys(encryptionContext).sort();
    this.id = JSON.stringify([keyId, ...names.flatMap((name) => [name, encryptionContext[name]])]);
  }
}

/** The reuse limits of data keys for encryption; see the codec's options. */
export interface EncryptionLimits {
  maxAgeMs: number;
  maxPayloads: number;
  maxBytes: number;
  maxScopes: number;
}

interface EncryptionKey {
  key: SealingKey;
  created: number;
  expires: number;
  uses: number;
  bytes: number;
}

/**
 * Hands out data keys for sealing, and calls KMS GenerateDataKey when a
 * scope has none within its limits.
 */
export class EncryptionKeys {
  private readonly scopes = new Map<string, EncryptionKey>();
  private readonly flight = new SingleFlight<EncryptionKey>();

  constructor(
    private readonly kms: KMS,
    private readonly limits: EncryptionLimits,
    private readonly clock: Clock,
    /** Turns a generated data key into its SealingKey and shares it with the decryption cache. */
    private readonly prepare: (keyArn: string, plaintext: Uint8Array, wrapped: Uint8Array, scope: Scope) => SealingKey,
  ) {}

  /**
   * Returns a data key of `scope` with room for one more payload of `size`
   * bytes, without waiting, or undefined if KMS has to be asked (then call
   * {@link get}).
   */
  tryGet(scope: Scope, size: number): SealingKey | undefined {
    if (this.limits.maxPayloads === 1) {
      return undefined;
    }
    const k = this.scopes.get(scope.id);
    return k !== undefined && this.reserve(k, size) ? k.key : undefined;
  }

  /** Returns a data key of `scope` with room for one more payload of `size` bytes. */
  async get(scope: Scope, size: number): Promise<SealingKey> {
    if (this.limits.maxPayloads === 1) {
      // One data key per payload: nothing to share, so nothing to wait for.
      return (await this.generate(scope)).key;
    }
    for (;;) {
      const k = await this.flight.do(scope.id, async () => {
        // Another flight may have replaced the key while this caller was
        // on its way here: a fresh key needs no KMS call.
        const current = this.scopes.get(scope.id);
        if (current !== undefined && this.usable(current)) {
          return current;
        }
        const generated = await this.generate(scope);
        this.store(scope.id, generated);
        return generated;
      });
      // Waiters of one flight share its key; if they use it up, the ones
      // left over start the next flight.
      if (this.reserve(k, size)) {
        return k.key;
      }
    }
  }

  /** How many scopes hold a data key. */
  get size(): number {
    return this.scopes.size;
  }

  // usable reports whether k may seal more payloads, without using any of
  // its allowance.
  private usable(k: EncryptionKey): boolean {
    return (
      this.clock() < k.expires &&
      k.uses < this.limits.maxPayloads &&
      (this.limits.maxBytes === 0 || k.bytes < this.limits.maxBytes)
    );
  }

  // reserve takes one payload of size bytes from k's allowance.
  private reserve(k: EncryptionKey, size: number): boolean {
    if (this.clock() >= k.expires) {
      return false;
    }
    if (++k.uses > this.limits.maxPayloads) {
      return false;
    }
    if (this.limits.maxBytes > 0) {
      k.bytes += size;
      // The first payload always fits, so an oversized payload gets a key
      // of its own instead of asking KMS forever.
      if (k.bytes > this.limits.maxBytes && k.bytes !== size) {
        return false;
      }
    }
    return true;
  }

  private async generate(scope: Scope): Promise<EncryptionKey> {
    const out = await this.kms.generateDataKey(scope.keyId, scope.encryptionContext);
    try {
      const key = this.prepare(out.keyArn, out.plaintext, out.wrapped, scope);
      const now = this.clock();
      return { key, created: now, expires: now + this.limits.maxAgeMs, uses: 0, bytes: 0 };
    } finally {
      out.plaintext.fill(0);
    }
  }

  // store installs k as the data key of scope id. When maxScopes scopes
  // are held it drops the expired ones and, if none is, the one with the
  // oldest data key.
  private store(id: string, k: EncryptionKey): void {
    if (!this.scopes.has(id) && this.scopes.size >= this.limits.maxScopes) {
      const now = this.clock();
      for (const [sid, sk] of this.scopes) {
        if (now >= sk.expires) {
          this.scopes.delete(sid);
        }
      }
      if (this.scopes.size >= this.limits.maxScopes) {
        let oldest: [string, EncryptionKey] | undefined;
        for (const entry of this.scopes) {
          if (oldest === undefined || entry[1].created < oldest[1].created) {
            oldest = entry;
          }
        }
        if (oldest !== undefined) {
          this.scopes.delete(oldest[0]);
        }
      }
    }
    this.scopes.set(id, k);
  }
}

/**
 * One way to unwrap a data key: the KMS client to call and the key ARN to
 * name in the Decrypt call, which KMS's answer must name too.
 */
export interface DecryptTarget {
  kms: KMS;
  keyArn: string;
}

/**
 * Says where the data keys wrapped by a key ARN are unwrapped: the targets
 * to try, best first, at least one. The next target is tried only after a
 * transient failure of the one before.
 */
export type DecryptRouter = (keyArn: string) => DecryptTarget[];

/** The router of a codec with one KMS client: it names the payload's key ARN, as it is. */
export function singleClientRouter(kms: KMS): DecryptRouter {
  return (keyArn) => [{ kms, keyArn }];
}

/**
 * The router over the KMS clients of several regions, `home` being the
 * codec's own region (which must have a client):
 *
 * - a multi-Region key is unwrapped by its replica in `home`, then after a
 *   transient failure by its replicas in the regions of `preference`, then
 *   in its own region, skipping regions without a client. A replica shares
 *   its key material, so what one wrapped another unwraps; asking `home`'s
 *   replica spares a call across regions, and keeps reads going while the
 *   writer's region is down;
 * - a single-Region key is unwrapped in its own region, by that region's
 *   client if there is one, else by `home`'s, which KMS answers only if the
 *   key is in fact `home`'s;
 * - anything that is not a key ARN goes to `home`'s client as it is.
 */
export function regionalRouter(home: string, clients: ReadonlyMap<string, KMS>, preference: readonly string[]): DecryptRouter {
  const homeClient = clients.get(home);
  if (homeClient === undefined) {
    throw new Error(`no KMS client for the home region ${home}`);
  }
  return (keyArn) => {
    const arn = parseKeyArn(keyArn);
    if (arn === undefined) {
      return [{ kms: homeClient, keyArn }];
    }
    if (!isMultiRegion(arn)) {
      return [{ kms: clients.get(arn.region) ?? homeClient, keyArn }];
    }
    const targets: DecryptTarget[] = [];
    const tried = new Set<string>();
    for (const region of [home, ...preference, arn.region]) {
      const kms = clients.get(region);
      if (kms !== undefined && !tried.has(region)) {
        tried.add(region);
        targets.push({ kms, keyArn: formatKeyArn(inRegion(arn, region)) });
      }
    }
    return targets;
  };
}

/** The bounds of the cache of unwrapped data keys; see the codec's options. */
export interface DecryptionLimits {
  size: number;
  ttlMs: number;
  negativeSize: number;
  negativeTtlMs: number;
}

/** A data key as a payload names it, to be unwrapped by KMS. */
export interface WrappedKey {
  /** Equal for two wrapped keys exactly when key ARN, blob and context are: the cache key. */
  identity: string;
  keyArn: string;
  blob: Uint8Array;
  /** The context to pass to KMS; called on a cache miss only. */
  encryptionContext: () => EncryptionContext;
}

/**
 * Holds unwrapped data keys in a bounded LRU with expiry, and calls KMS
 * Decrypt for a wrapped key it does not hold. It remembers KMS refusing a
 * wrapped key (not throttling, faults or timeouts) for a short while, so a
 * flood of payloads with one bad wrapped key costs one KMS call.
 */
export class DecryptionKeys {
  private readonly keys: LRUCache<string, Uint8Array>;
  private readonly failures: LRUCache<string, KMSError> | undefined;
  private readonly flight = new SingleFlight<Uint8Array>();

  constructor(
    private readonly route: DecryptRouter,
    limits: DecryptionLimits,
    clock: Clock,
  ) {
    const perf = { now: clock };
    this.keys = new LRUCache({ max: limits.size, ttl: limits.ttlMs, ttlResolution: 0, perf });
    if (limits.negativeTtlMs > 0) {
      this.failures = new LRUCache({ max: limits.negativeSize, ttl: limits.negativeTtlMs, ttlResolution: 0, perf });
    }
  }

  /** Returns the cached data key of `identity`, without asking KMS. */
  cached(identity: string): Uint8Array | undefined {
    return this.keys.get(identity);
  }

  /** Returns the data key of `w`, from the cache or from KMS. */
  async get(w: WrappedKey): Promise<Uint8Array> {
    const hit = this.keys.get(w.identity);
    if (hit !== undefined) {
      return hit;
    }
    this.throwRemembered(w.identity);
    return this.flight.do(w.identity, async () => {
      const filled = this.keys.get(w.identity); // by a flight that just ended
      if (filled !== undefined) {
        return filled;
      }
      // A flight that just ended may have been refused; do not ask again.
      this.throwRemembered(w.identity);
      try {
        const plaintext = await this.unwrap(w);
        const key = Uint8Array.from(plaintext);
        plaintext.fill(0);
        this.keys.set(w.identity, key);
        this.failures?.delete(w.identity);
        return key;
      } catch (err) {
        if (err instanceof KMSError && !err.transient) {
          this.failures?.set(w.identity, err);
        }
        throw err;
      }
    });
  }

  // unwrap asks the targets of w's key ARN in turn, moving on to the next
  // only after a transient failure: a refusal is final.
  private async unwrap(w: WrappedKey): Promise<Uint8Array> {
    const context = w.encryptionContext();
    const targets = this.route(w.keyArn);
    for (const [i, target] of targets.entries()) {
      try {
        return await target.kms.decrypt(target.keyArn, w.blob, context);
      } catch (err) {
        if (!(err instanceof KMSError && err.transient) || i === targets.length - 1) {
          throw err;
        }
      }
    }
    throw new Error(`no KMS client to unwrap a data key of ${w.keyArn}`);
  }

  /** Puts a data key the codec just generated into the cache; it is copied. */
  add(identity: string, plaintext: Uint8Array): void {
    this.keys.set(identity, Uint8Array.from(plaintext));
  }

  /** How many data keys the cache holds. */
  get size(): number {
    return this.keys.size;
  }

  // A remembered refusal is thrown as a new error, so that each caller can
  // say which of its payloads it was about.
  private throwRemembered(identity: string): void {
    const refused = this.failures?.get(identity);
    if (refused !== undefined) {
      throw new KMSError(refused.operation, refused.keyId, refused.cause);
    }
  }
}

/**
 * Learns the key ARN that the configured key ID stands for. Payloads name
 * their master key by ARN, but users may configure an alias or a bare key
 * ID; an alias may move to a new key at any time, so the ARN is asked of KMS
 * (DescribeKey) and kept for a limited time. A key ARN resolves to itself.
 */
export class KeyResolver {
  // The last answer, or the last failure, until it expires.
  private current: { arn: string; expires: number } | { error: KMSError; expires: number } | undefined;
  private readonly flight = new SingleFlight<string>();

  constructor(
    private readonly kms: KMS,
    private readonly keyId: string,
    private readonly ttl: { ttlMs: number; failureTtlMs: number },
    private readonly clock: Clock,
  ) {}

  /**
   * The key ARN the key ID stands for now. A failed DescribeKey is
   * remembered for failureTtlMs, so that during an outage every payload
   * does not wait for its own failed call.
   */
  async arn(): Promise<string> {
    if (isKeyArn(this.keyId)) {
      return this.keyId;
    }
    const current = this.current;
    if (current !== undefined && this.clock() < current.expires) {
      if ('error' in current) {
        throw new KMSError(current.error.operation, current.error.keyId, current.error.cause);
      }
      return current.arn;
    }
    return this.flight.do('', async () => {
      try {
        const arn = await this.kms.describeKeyArn(this.keyId);
        this.observe(arn);
        return arn;
      } catch (err) {
        if (err instanceof KMSError && this.ttl.failureTtlMs > 0) {
          this.current = { error: err, expires: this.clock() + this.ttl.failureTtlMs };
        }
        throw err;
      }
    });
  }

  /** Records `arn` as what the key ID stands for now, as GenerateDataKey reports it. */
  observe(arn: string): void {
    this.current = { arn, expires: this.clock() + this.ttl.ttlMs };
  }
}
