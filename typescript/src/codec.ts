/**
 * The PayloadCodec of kmscodec.
 *
 * @module
 */

import type { KMSClient } from '@aws-sdk/client-kms';
import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';

import { isKeyArn, replicaSetOf, sameKeyArn } from './arn';
import {
  DecryptionKeys,
  EncryptionKeys,
  KeyResolver,
  Scope,
  regionalRouter,
  singleClientRouter,
  type Clock,
  type DecryptRouter,
} from './cache';
import { marshalContext, type EncryptionContext } from './context';
import { MAX_CONTEXT_SIZE, SealingKey, marshalPayloadParts, parseEnvelope, type Envelope } from './envelope';
import {
  InvalidOptionsError,
  KMSCodecError,
  KeyNotAllowedError,
  NamespaceMismatchError,
  NilPayloadError,
  UnencryptedPayloadError,
} from './errors';
import { KMS, type KMSCallCounter } from './kms';

/**
 * The encryption context key under which the codec binds each data key to
 * the Temporal namespace it was generated for. KMS refuses to unwrap the
 * data key with any other namespace in the context.
 */
export const NAMESPACE_CONTEXT_KEY = 'temporal-namespace';

/**
 * Options of a {@link KMSCodec}. `kms` and `keyId` are required; every
 * other option has a default, given with it. Durations are in milliseconds.
 */
export interface KMSCodecOptions {
  /**
   * The client that generates and unwraps data keys: `new KMSClient({ region })`.
   * Required. With `region`, it is that region's client.
   */
  kms: KMSClient;

  /**
   * The AWS region of `kms`, the codec's own region, which turns on the
   * multi-Region rule of decryption (docs/FORMAT.md, "Multi-Region keys"):
   *
   * - a payload under a multi-Region key (key ID `mrk-...`) is unwrapped by
   *   that key's replica in `region`, through `kms`, with no call to the
   *   writer's region; only if that call fails transiently (throttling, a
   *   KMS-side fault, a timeout, a broken connection) are the replicas in
   *   the regions of `regionPreference` that have a client in
   *   `regionalKms` tried, in order, then the one in the payload's own
   *   region if it has a client. A refusal is final;
   * - a payload under a single-Region key is unwrapped in the key's own
   *   region, by its client in `regionalKms`, or else by `kms`.
   *
   * Default: none; every payload is unwrapped by `kms`, naming the
   * payload's key ARN.
   */
  region?: string;

  /**
   * KMS clients of regions other than `region`, by region name
   * (`us-west-2`). Requires `region`, and must not name it: `kms` is its
   * client. Default: none.
   */
  regionalKms?: Readonly<Record<string, KMSClient>>;

  /**
   * The order in which the replicas of other regions are tried when
   * `region`'s KMS fails transiently, for payloads under multi-Region keys;
   * regions without a client in `regionalKms` are skipped. Requires
   * `region`. Default: none, and only the writer's region is tried after
   * `region`.
   */
  regionPreference?: readonly string[];

  /**
   * The KMS key that new payloads are encrypted under: a key ARN, key ID,
   * alias name (`alias/temporal`) or alias ARN. Payloads always record the
   * key ARN. With an alias, the codec follows the alias to a new key within
   * `dataKeyMaxAge`. Required unless `disableEncryption` is set.
   */
  keyId?: string;

  /**
   * Further key ARNs whose payloads may be decrypted: the keys rotated
   * away from. A payload under any other key fails with
   * {@link KeyNotAllowedError} before any KMS call. Only key ARNs are
   * accepted, so that moving an alias never widens what is decrypted. A
   * multi-Region key allows its replicas in every region too (same
   * partition, account and key ID); a single-Region key allows only its
   * exact ARN.
   */
  decryptKeyIds?: readonly string[];

  /**
   * Added to every data key's KMS encryption context: a key policy or grant
   * can require it, and CloudTrail logs it with every call. It must not set
   * {@link NAMESPACE_CONTEXT_KEY}.
   */
  encryptionContext?: EncryptionContext;

  /**
   * The Temporal namespace put in the encryption context when the SDK does
   * not say which namespace a payload belongs to. The SDK says so (its
   * serialization context) for workflow and activity payloads, so this
   * mostly matters for a codec used on its own, as in a codec server.
   * Default: none.
   */
  namespace?: string;

  /** How long a generated data key is used for new payloads, in milliseconds. Default 300,000 (5 minutes). */
  dataKeyMaxAge?: number;

  /**
   * How many payloads one data key encrypts before a new one is generated.
   * Default 10,000. Set 1 for a KMS data key per payload.
   */
  maxPayloadsPerDataKey?: number;

  /** Bounds the payload bytes one data key encrypts. Default 0: no bound. */
  maxBytesPerDataKey?: number;

  /** How many unwrapped data keys are kept for decryption. Default 10,000. */
  decryptCacheSize?: number;

  /** How long an unwrapped data key is kept, in milliseconds. Default 3,600,000 (1 hour). */
  decryptCacheTtl?: number;

  /**
   * Bounds each KMS call, the AWS SDK's retries included, in milliseconds.
   * Default 5,000, well inside Temporal's default 10-second workflow task
   * timeout.
   */
  kmsTimeout?: number;

  /**
   * Makes decode fail with {@link UnencryptedPayloadError} on a payload
   * that is not encrypted. By default such payloads pass through, so
   * histories written before encryption was turned on still read.
   */
  rejectUnencrypted?: boolean;

  /**
   * Makes decode fail with {@link NamespaceMismatchError}, before any KMS
   * call, on a payload whose encryption context names a namespace other
   * than the one the codec decodes for (the SDK's serialization context,
   * else `namespace`). Payloads that name no namespace still decode. Off by
   * default, because some payloads legitimately cross namespaces.
   */
  requireSameNamespace?: boolean;

  /**
   * Makes encode pass payloads through unchanged while decode still
   * decrypts: for rolling encryption back without stranding encrypted
   * histories.
   */
  disableEncryption?: boolean;

  /** Returns the current time in milliseconds since the epoch. Default `Date.now`; tests set it. */
  clock?: Clock;

  /** Called before every KMS call with its operation, to count them. */
  onKMSCall?: KMSCallCounter;
}

/** The defaults of {@link KMSCodecOptions}, durations in milliseconds. */
export const DEFAULTS = Object.freeze({
  dataKeyMaxAge: 5 * 60_000,
  maxPayloadsPerDataKey: 10_000,
  maxBytesPerDataKey: 0,
  decryptCacheSize: 10_000,
  decryptCacheTtl: 60 * 60_000,
  kmsTimeout: 5_000,
  /** How long a KMS refusal of a wrapped key is remembered. */
  negativeCacheTtl: 10_000,
  negativeCacheSize: 1024,
  /** How long a failed DescribeKey of the configured alias is returned without asking KMS again. */
  resolveFailureTtl: 5_000,
  /** How many scopes (in practice, namespaces) hold a data key at once. */
  maxScopes: 1024,
});

/**
 * Encrypts every payload a Temporal client or worker writes under its own
 * key, derived from a data key that AWS KMS generated, in the
 * kms-envelope-v1 format; and decrypts them again. Use it in
 * `dataConverter.payloadCodecs` of the client and the worker.
 */
export class KMSCodec implements PayloadCodec {
  private readonly options: Readonly<KMSCodecOptions>;
  private readonly encryptionContext: EncryptionContext;
  private readonly encryptionKeys: EncryptionKeys;
  private readonly decryptionKeys: DecryptionKeys;
  private readonly resolver: KeyResolver | undefined;
  private readonly allowed: ReadonlySet<string>;
  // The region-free names of the multi-Region keys of allowed.
  private readonly allowedReplicaSets: ReadonlySet<string>;
  private readonly scopes = new Map<string, Scope>();

  /**
   * Validates `options`. Makes no KMS call: data keys are generated on
   * first use, so a worker starts even while KMS is out of reach.
   */
  constructor(options: KMSCodecOptions) {
    const keyId = options.keyId ?? '';
    if (typeof options.kms !== 'object') {
      throw new InvalidOptionsError('options.kms is required');
    }
    if (keyId === '' && options.disableEncryption !== true) {
      throw new InvalidOptionsError('options.keyId is required unless options.disableEncryption is set');
    }
    this.encryptionContext = validateContext(options.encryptionContext ?? {});
    const allowed = new Set<string>();
    for (const id of options.decryptKeyIds ?? []) {
      if (!isKeyArn(id)) {
        throw new InvalidOptionsError(`options.decryptKeyIds: ${JSON.stringify(id)} is not a key ARN`);
      }
      allowed.add(id);
    }
    if (isKeyArn(keyId)) {
      allowed.add(keyId);
    }
    this.allowed = allowed;
    this.allowedReplicaSets = new Set([...allowed].flatMap((id) => replicaSetOf(id) ?? []));
    validateRegions(options);
    this.options = { ...options, keyId };
    const clock = options.clock ?? Date.now;
    const timeoutMs = positive('kmsTimeout', options.kmsTimeout, DEFAULTS.kmsTimeout);
    const kms = new KMS(options.kms, timeoutMs, options.onKMSCall);
    const maxAge = positive('dataKeyMaxAge', options.dataKeyMaxAge, DEFAULTS.dataKeyMaxAge);
    this.decryptionKeys = new DecryptionKeys(
      decryptRouter(options, kms, timeoutMs),
      {
        size: positive('decryptCacheSize', options.decryptCacheSize, DEFAULTS.decryptCacheSize),
        ttlMs: positive('decryptCacheTtl', options.decryptCacheTtl, DEFAULTS.decryptCacheTtl),
        negativeSize: DEFAULTS.negativeCacheSize,
        negativeTtlMs: DEFAULTS.negativeCacheTtl,
      },
      clock,
    );
    this.encryptionKeys = new EncryptionKeys(
      kms,
      {
        maxAgeMs: maxAge,
        maxPayloads: positive('maxPayloadsPerDataKey', options.maxPayloadsPerDataKey, DEFAULTS.maxPayloadsPerDataKey),
        maxBytes: nonNegative('maxBytesPerDataKey', options.maxBytesPerDataKey, DEFAULTS.maxBytesPerDataKey),
        maxScopes: DEFAULTS.maxScopes,
      },
      clock,
      (keyArn, plaintext, wrapped, scope) => this.prepare(keyArn, plaintext, wrapped, scope),
    );
    this.resolver =
      keyId === '' ? undefined : new KeyResolver(kms, keyId, { ttlMs: maxAge, failureTtlMs: DEFAULTS.resolveFailureTtl }, clock);
  }

  /**
   * Encrypts each payload into a kms-envelope-v1 payload, with its data key
   * bound to the namespace of `context` (else the configured `namespace`).
   * It fails rather than return any payload unencrypted.
   */
  async encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    if (this.options.disableEncryption === true) {
      return payloads;
    }
    const scope = this.scopeFor(context?.namespace);
    const out: Payload[] = [];
    for (const [i, payload] of payloads.entries()) {
      try {
        if ((payload as Payload | null | undefined) == null) {
          throw new NilPayloadError();
        }
        const plaintext = marshalPayloadParts(payload);
        const size = plaintext.reduce((sum, part) => sum + part.length, 0);
        const key = this.encryptionKeys.tryGet(scope, size) ?? (await this.encryptionKeys.get(scope, size));
        out.push(key.seal(plaintext));
      } catch (err) {
        throw locate(err, 'encode', i, payloads.length);
      }
    }
    return out;
  }

  /**
   * Decrypts each kms-envelope-v1 payload back into the payload that was
   * encoded, and passes any other payload through unchanged (unless
   * `rejectUnencrypted`). Every payload of the batch is parsed and checked
   * (format, limits, allowed key, namespace) before KMS is asked for any
   * data key, so a batch refused for one bad payload costs no KMS call.
   */
  async decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    const envelopes = await this.check(payloads, context);
    const out: Payload[] = [];
    for (const [i, payload] of payloads.entries()) {
      const envelope = envelopes[i];
      if (envelope === undefined) {
        out.push(payload);
        continue;
      }
      try {
        const dataKey = this.decryptionKeys.cached(envelope.identity) ?? (await this.dataKey(envelope));
        out.push(envelope.open(dataKey));
      } catch (err) {
        throw locate(err, 'decode', i, payloads.length);
      }
    }
    return out;
  }

  // check parses every payload and applies the policy, without asking KMS
  // for any data key.
  private async check(payloads: Payload[], context: SerializationContext | undefined): Promise<(Envelope | undefined)[]> {
    const envelopes: (Envelope | undefined)[] = [];
    for (const [i, payload] of payloads.entries()) {
      try {
        const envelope = parseEnvelope(payload);
        if (envelope === undefined && this.options.rejectUnencrypted === true) {
          throw new UnencryptedPayloadError();
        }
        if (envelope !== undefined) {
          if (!this.isAllowed(envelope.keyArn)) {
            await this.checkResolved(envelope.keyArn);
          }
          if (this.options.requireSameNamespace === true) {
            this.checkNamespace(envelope, context?.namespace ?? this.options.namespace);
          }
        }
        envelopes.push(envelope);
      } catch (err) {
        throw locate(err, 'decode', i, payloads.length);
      }
    }
    return envelopes;
  }

  private async dataKey(envelope: Envelope): Promise<Uint8Array> {
    return this.decryptionKeys.get({
      identity: envelope.identity,
      keyArn: envelope.keyArn,
      blob: envelope.wrappedKey,
      encryptionContext: () => envelope.encryptionContext(),
    });
  }

  // isAllowed reports whether keyArn is a key ARN of the options, or a
  // replica in another region of one of them that is a multi-Region key.
  private isAllowed(keyArn: string): boolean {
    if (this.allowed.has(keyArn)) {
      return true;
    }
    const replicaSet = this.allowedReplicaSets.size > 0 ? replicaSetOf(keyArn) : undefined;
    return replicaSet !== undefined && this.allowedReplicaSets.has(replicaSet);
  }

  // checkResolved throws KeyNotAllowedError unless keyArn, which is not a
  // key ARN of the options, matches the one the configured key ID stands for.
  private async checkResolved(keyArn: string): Promise<void> {
    if (this.resolver !== undefined && sameKeyArn(await this.resolver.arn(), keyArn)) {
      return;
    }
    throw new KeyNotAllowedError(keyArn);
  }

  private checkNamespace(envelope: Envelope, namespace: string | undefined): void {
    const named = envelope.encryptionContext()[NAMESPACE_CONTEXT_KEY];
    if (named !== undefined && namespace !== undefined && namespace !== '' && named !== namespace) {
      throw new NamespaceMismatchError(
        `payload belongs to another namespace: it names ${JSON.stringify(named)}, decoding for ${JSON.stringify(namespace)}`,
      );
    }
  }

  // prepare turns a data key that KMS just generated into the SealingKey
  // that seals with it, and puts it into the decryption cache, so that a
  // worker reading back its own payloads makes no KMS call.
  private prepare(keyArn: string, plaintext: Uint8Array, wrapped: Uint8Array, scope: Scope): SealingKey {
    const key = new SealingKey(plaintext, { keyArn, wrappedKey: wrapped, encryptionContext: scope.encryptionContext });
    this.decryptionKeys.add(key.identity, plaintext);
    this.resolver?.observe(keyArn);
    return key;
  }

  // scopeFor returns the data-key scope of a namespace, remembered so that
  // each call costs a map lookup.
  private scopeFor(contextNamespace: string | undefined): Scope {
    const namespace = contextNamespace ?? this.options.namespace ?? '';
    let scope = this.scopes.get(namespace);
    if (scope === undefined) {
      const context = namespace === '' ? this.encryptionContext : { ...this.encryptionContext, [NAMESPACE_CONTEXT_KEY]: namespace };
      scope = new Scope(this.options.keyId ?? '', context);
      if (this.scopes.size < DEFAULTS.maxScopes) {
        this.scopes.set(namespace, scope);
      }
    }
    return scope;
  }
}

// validateRegions checks the options of regional routing.
function validateRegions(options: KMSCodecOptions): void {
  const regional = Object.entries(options.regionalKms ?? {});
  const region = options.region;
  if (region === undefined || region === '') {
    if (regional.length > 0 || (options.regionPreference ?? []).length > 0) {
      throw new InvalidOptionsError('options.regionalKms and options.regionPreference need options.region, the region of options.kms');
    }
    return;
  }
  if (typeof region !== 'string') {
    throw new InvalidOptionsError('options.region must be a region name');
  }
  for (const [name, client] of regional) {
    if (name === '') {
      throw new InvalidOptionsError('options.regionalKms has an empty region name');
    }
    if (name === region) {
      throw new InvalidOptionsError(`options.regionalKms must not name options.region ${JSON.stringify(region)}: options.kms is its client`);
    }
    if (typeof client !== 'object') {
      throw new InvalidOptionsError(`options.regionalKms[${JSON.stringify(name)}] is not a KMS client`);
    }
  }
}

// decryptRouter returns who unwraps data keys: kms alone without a region,
// else the clients of every region by the multi-Region rule.
function decryptRouter(options: KMSCodecOptions, kms: KMS, timeoutMs: number): DecryptRouter {
  const region = options.region ?? '';
  if (region === '') {
    return singleClientRouter(kms);
  }
  const clients = new Map<string, KMS>([[region, kms]]);
  for (const [name, client] of Object.entries(options.regionalKms ?? {})) {
    clients.set(name, new KMS(client, timeoutMs, options.onKMSCall));
  }
  return regionalRouter(region, clients, [...(options.regionPreference ?? [])]);
}

function validateContext(context: EncryptionContext): EncryptionContext {
  if (Object.prototype.hasOwnProperty.call(context, NAMESPACE_CONTEXT_KEY)) {
    throw new InvalidOptionsError(`options.encryptionContext must not set ${JSON.stringify(NAMESPACE_CONTEXT_KEY)}: use options.namespace`);
  }
  let json: Uint8Array | undefined;
  try {
    json = marshalContext(context);
  } catch (err) {
    throw new InvalidOptionsError(`options.encryptionContext: ${(err as Error).message}`, { cause: err });
  }
  if (json !== undefined && json.length > MAX_CONTEXT_SIZE / 2) {
    throw new InvalidOptionsError(
      `options.encryptionContext is ${String(json.length)} bytes as JSON; keep it under ${String(MAX_CONTEXT_SIZE / 2)}`,
    );
  }
  return Object.freeze({ ...context });
}

function positive(name: string, value: number | undefined, fallback: number): number {
  if (value === undefined || value === 0) {
    return fallback;
  }
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionsError(`options.${name} must be a non-negative integer, got ${String(value)}`);
  }
  return value;
}

function nonNegative(name: string, value: number | undefined, fallback: number): number {
  return value === 0 ? 0 : positive(name, value, fallback);
}

function locate(err: unknown, operation: 'encode' | 'decode', index: number, count: number): unknown {
  return err instanceof KMSCodecError ? err.locate(operation, index, count) : err;
}
