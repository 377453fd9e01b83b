/**
 * kms-envelope-v1, the wire format of an encrypted payload
 * (docs/FORMAT.md). The functions here are pure: they take a plaintext
 * data key that the caller got from KMS and never talk to KMS themselves.
 *
 * @module
 */

import { createCipheriv, createDecipheriv, createHmac, randomFillSync, timingSafeEqual } from 'node:crypto';

import type { Payload } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

import { marshalContext, parseContext, type EncryptionContext } from './context';
import { AuthenticationFailedError, MalformedPayloadError, UnsupportedFormatError } from './errors';

/** The value of the `encryption-format` metadata field. */
export const FORMAT = 'kms-envelope-v1';

/** Metadata field names and values of a sealed payload. */
export const METADATA_ENCODING = 'encoding';
export const METADATA_FORMAT = 'encryption-format';
export const METADATA_KEY_ID = 'encryption-key-id';
export const METADATA_DATA_KEY = 'encryption-data-key';
export const METADATA_CONTEXT = 'encryption-context';
export const ENCODING_ENCRYPTED = 'binary/encrypted';

/** Sizes of the fixed parts of the format, in bytes. */
export const DATA_KEY_SIZE = 32;
export const SALT_SIZE = 32;
export const COMMITMENT_SIZE = 32;
export const TAG_SIZE = 16;
/** How much longer `data` is than the protobuf encoding of the input payload. */
export const OVERHEAD = SALT_SIZE + COMMITMENT_SIZE + TAG_SIZE;

/**
 * Limits on the metadata fields: they bound the work an untrusted payload
 * can ask for, and are far above what KMS produces.
 */
export const MAX_KEY_ARN_SIZE = 2048;
export const MAX_WRAPPED_KEY_SIZE = 4096;
export const MAX_CONTEXT_SIZE = 8192;

// The HKDF-Expand input of the first (and only) output block of each
// derived value: its info string, then the block counter 0x01.
const EXPAND_PAYLOAD_KEY = Buffer.from(`${FORMAT} derive\x01`);
const EXPAND_COMMITMENT = Buffer.from(`${FORMAT} commit\x01`);
const ZERO_NONCE = Buffer.alloc(12);

const utf8 = new TextEncoder();
const strictUTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const ENCODING_ENCRYPTED_BYTES = utf8.encode(ENCODING_ENCRYPTED);
const FORMAT_BYTES = utf8.encode(FORMAT);

const PayloadProto = temporal.api.common.v1.Payload;

/** What a sealed payload names: the master key, the wrapped data key and its context. */
export interface Header {
  /** The ARN of the KMS key that wrapped the data key, as GenerateDataKey returned it. */
  keyArn: string;
  /** The CiphertextBlob that GenerateDataKey returned. */
  wrappedKey: Uint8Array;
  /** The encryption context passed to GenerateDataKey. */
  encryptionContext: EncryptionContext;
}

/**
 * Seals payloads under one data key. Building it validates the header once
 * and precomputes the metadata and the additional authenticated data that
 * every payload sealed under this data key shares.
 */
export class SealingKey {
  readonly keyArn: string;
  /** The AAD, as a string that also identifies the data key in a cache. */
  readonly identity: string;
  private readonly dataKey: Buffer;
  private readonly aad: Buffer;
  private readonly metadata: Readonly<Record<string, Uint8Array>>;

  constructor(dataKey: Uint8Array, header: Header) {
    if (dataKey.length !== DATA_KEY_SIZE) {
      throw new RangeError(`data key is ${String(dataKey.length)} bytes, want ${String(DATA_KEY_SIZE)}`);
    }
    if (!header.keyArn.isWellFormed()) {
      throw new MalformedPayloadError(`${METADATA_KEY_ID} is not valid Unicode`);
    }
    const contextJSON = marshalContext(header.encryptionContext);
    const keyArn = utf8.encode(header.keyArn);
    checkFields(keyArn, header.wrappedKey, contextJSON);
    this.keyArn = header.keyArn;
    this.dataKey = Buffer.from(dataKey);
    this.aad = additionalData(keyArn, header.wrappedKey, contextJSON);
    this.identity = this.aad.toString('latin1');
    const metadata: Record<string, Uint8Array> = {
      [METADATA_ENCODING]: ENCODING_ENCRYPTED_BYTES,
      [METADATA_FORMAT]: FORMAT_BYTES,
      [METADATA_KEY_ID]: keyArn,
      [METADATA_DATA_KEY]: Uint8Array.from(header.wrappedKey),
    };
    if (contextJSON !== undefined) {
      metadata[METADATA_CONTEXT] = contextJSON;
    }
    this.metadata = metadata;
  }

  /**
   * Encrypts `plaintext`, the protobuf encoding of a payload (see
   * {@link marshalPayload}) or the parts of it in order (see
   * {@link marshalPayloadParts}), into a new kms-envelope-v1 payload.
   * `salt` is for test vectors only; by default a fresh random one is
   * drawn.
   */
  seal(plaintext: Uint8Array | readonly Uint8Array[], salt: Uint8Array = randomSalt()): Payload {
    if (salt.length !== SALT_SIZE) {
      throw new RangeError(`salt is ${String(salt.length)} bytes, want ${String(SALT_SIZE)}`);
    }
    const parts = plaintext instanceof Uint8Array ? [plaintext] : plaintext;
    const { payloadKey, commitment } = derive(this.dataKey, salt);
    const cipher = createCipheriv('aes-256-gcm', payloadKey, ZERO_NONCE);
    cipher.setAAD(this.aad);
    // GCM is a stream cipher: encrypting the parts one after the other
    // gives the ciphertext of their concatenation, without copying them
    // into one buffer first.
    const out: Uint8Array[] = [salt, commitment];
    let size = OVERHEAD;
    for (const part of parts) {
      out.push(cipher.update(part));
      size += part.length;
    }
    cipher.final();
    out.push(cipher.getAuthTag());
    const data = Buffer.concat(out, size);
    // The metadata values are shared by every payload of this data key;
    // the SDK treats payload bytes as immutable.
    return { metadata: { ...this.metadata }, data };
  }
}

/** A parsed kms-envelope-v1 payload: what it names and holds, not yet decrypted. */
export class Envelope {
  /** The ARN of the KMS key that wrapped the data key. */
  readonly keyArn: string;
  /** The data key as KMS wrapped it (a CiphertextBlob). */
  readonly wrappedKey: Uint8Array;
  /** The `encryption-context` metadata value, undefined when absent. */
  readonly contextJSON: Uint8Array | undefined;
  /**
   * Equal for two payloads exactly when their key ARN, wrapped key and
   * context are: the key of a cache of unwrapped data keys (the AAD).
   */
  readonly identity: string;
  private readonly aad: Buffer;
  private readonly data: Uint8Array;

  constructor(keyArn: string, wrappedKey: Uint8Array, contextJSON: Uint8Array | undefined, aad: Buffer, data: Uint8Array) {
    this.keyArn = keyArn;
    this.wrappedKey = wrappedKey;
    this.contextJSON = contextJSON;
    this.aad = aad;
    this.identity = aad.toString('latin1');
    this.data = data;
  }

  /**
   * Parses the encryption context, which KMS must be given to unwrap the
   * data key; an empty object when the payload has none.
   */
  encryptionContext(): Record<string, string> {
    return this.contextJSON === undefined ? {} : parseContext(this.contextJSON);
  }

  /**
   * Checks the key commitment and decrypts with `dataKey`, the data key KMS
   * unwrapped from `wrappedKey`, and returns the original payload.
   */
  open(dataKey: Uint8Array): Payload {
    if (dataKey.length !== DATA_KEY_SIZE) {
      throw new RangeError(`data key is ${String(dataKey.length)} bytes, want ${String(DATA_KEY_SIZE)}`);
    }
    const salt = this.data.subarray(0, SALT_SIZE);
    const { payloadKey, commitment } = derive(dataKey, salt);
    if (!timingSafeEqual(commitment, this.data.subarray(SALT_SIZE, SALT_SIZE + COMMITMENT_SIZE))) {
      throw new AuthenticationFailedError('key commitment does not match');
    }
    const end = this.data.length - TAG_SIZE;
    const decipher = createDecipheriv('aes-256-gcm', payloadKey, ZERO_NONCE);
    decipher.setAAD(this.aad);
    decipher.setAuthTag(this.data.subarray(end));
    let plaintext: Buffer;
    try {
      plaintext = decipher.update(this.data.subarray(SALT_SIZE + COMMITMENT_SIZE, end));
      decipher.final();
    } catch {
      throw new AuthenticationFailedError('AES-GCM tag does not verify');
    }
    try {
      return unmarshalPayload(plaintext);
    } catch (err) {
      // Authentic but not a payload: the sealer was broken, not the transport.
      throw new MalformedPayloadError('decrypted data is not a payload', { cause: err });
    }
  }
}

/**
 * Reads the envelope of `payload` without decrypting anything. Returns
 * undefined for a payload this format did not produce (its encoding is not
 * `binary/encrypted` or it has no `encryption-format`), which a codec passes
 * through. Throws {@link UnsupportedFormatError} for another
 * `encryption-format` and {@link MalformedPayloadError} for a
 * kms-envelope-v1 payload whose fields are missing or out of bounds. The
 * encryption context is parsed later, when it is needed.
 */
export function parseEnvelope(payload: Payload | null | undefined): Envelope | undefined {
  if (payload == null) {
    throw new MalformedPayloadError('payload is nil');
  }
  const metadata = payload.metadata ?? {};
  const encoding = field(metadata, METADATA_ENCODING);
  const format = field(metadata, METADATA_FORMAT);
  if (encoding === undefined || !bytesEqual(encoding, ENCODING_ENCRYPTED_BYTES) || format === undefined) {
    return undefined;
  }
  if (!bytesEqual(format, FORMAT_BYTES)) {
    throw new UnsupportedFormatError(`unsupported encryption format ${JSON.stringify(truncate(format))}`);
  }
  const keyArn = field(metadata, METADATA_KEY_ID) ?? new Uint8Array();
  const wrappedKey = field(metadata, METADATA_DATA_KEY) ?? new Uint8Array();
  const contextJSON = field(metadata, METADATA_CONTEXT);
  checkFields(keyArn, wrappedKey, contextJSON);
  if (contextJSON?.length === 0) {
    throw new MalformedPayloadError(`${METADATA_CONTEXT} is present but empty`);
  }
  const data = payload.data ?? new Uint8Array();
  if (data.length < OVERHEAD) {
    throw new MalformedPayloadError(`data is ${String(data.length)} bytes, shorter than the ${String(OVERHEAD)}-byte minimum`);
  }
  let keyArnText: string;
  try {
    keyArnText = strictUTF8.decode(keyArn);
  } catch {
    throw new MalformedPayloadError(`${METADATA_KEY_ID} is not valid UTF-8`);
  }
  const aad = additionalData(keyArn, wrappedKey, contextJSON);
  return new Envelope(keyArnText, wrappedKey, contextJSON, aad, data);
}

/**
 * Returns the protobuf encoding of a payload, metadata included, with map
 * entries in sorted order.
 */
export function marshalPayload(payload: Payload): Uint8Array {
  return Buffer.concat(marshalPayloadParts(payload));
}

/**
 * Returns the protobuf encoding of a payload as parts to be concatenated
 * in order, the payload's data among them as it is: a large payload's
 * bytes are then encrypted where they lie, never copied into a buffer of
 * the whole encoding. Fields go in field-number order (metadata, data,
 * external payloads), as protobuf encoders write them; metadata entries
 * are sorted by key.
 */
export function marshalPayloadParts(payload: Payload): Uint8Array[] {
  const entries = Object.entries(payload.metadata ?? {});
  if (entries.length > 1) {
    entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
  const parts: Uint8Array[] = [];
  if (entries.length > 0) {
    parts.push(PayloadProto.encode({ metadata: Object.fromEntries(entries) }).finish());
  }
  const data = payload.data;
  if (data != null && data.length > 0) {
    parts.push(bytesFieldHeader(PAYLOAD_DATA_FIELD, data.length), data);
  }
  if (payload.externalPayloads != null && payload.externalPayloads.length > 0) {
    parts.push(PayloadProto.encode({ externalPayloads: payload.externalPayloads }).finish());
  }
  return parts;
}

// The field number of Payload.data.
const PAYLOAD_DATA_FIELD = 2;

// bytesFieldHeader is the protobuf key (field number, wire type 2:
// length-delimited) and the varint length that precede a bytes field.
function bytesFieldHeader(field: number, length: number): Uint8Array {
  const header = [(field << 3) | 2];
  let n = length;
  while (n >= 0x80) {
    header.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  header.push(n);
  return Uint8Array.from(header);
}

/** Parses the protobuf encoding of a payload. */
export function unmarshalPayload(bytes: Uint8Array): Payload {
  const decoded = PayloadProto.decode(bytes);
  const payload: Payload = { metadata: decoded.metadata, data: decoded.data };
  if (decoded.externalPayloads.length > 0) {
    payload.externalPayloads = decoded.externalPayloads;
  }
  return payload;
}

/**
 * Derives the payload key and the key commitment from the data key and the
 * payload's salt with HKDF-SHA256 (RFC 5869): one HKDF-Extract, then an
 * HKDF-Expand for each. Both outputs are one hash block long, so each
 * Expand is a single HMAC of info ‖ 0x01. This runs for every payload, and
 * three HMACs cost less than two calls of crypto.hkdfSync, which would
 * extract twice; a test checks the result against hkdfSync.
 */
export function derive(dataKey: Uint8Array, salt: Uint8Array): { payloadKey: Buffer; commitment: Buffer } {
  const prk = createHmac('sha256', salt).update(dataKey).digest();
  const payloadKey = createHmac('sha256', prk).update(EXPAND_PAYLOAD_KEY).digest();
  const commitment = createHmac('sha256', prk).update(EXPAND_COMMITMENT).digest();
  prk.fill(0);
  return { payloadKey, commitment };
}

/**
 * The additional authenticated data: "kms-envelope-v1", then the key ARN,
 * the wrapped key and the context, each as a 4-byte big-endian length and
 * its bytes, so that two different headers never give the same AAD.
 */
function additionalData(keyArn: Uint8Array, wrappedKey: Uint8Array, contextJSON: Uint8Array | undefined): Buffer {
  const context = contextJSON ?? new Uint8Array();
  const aad = Buffer.alloc(FORMAT_BYTES.length + 12 + keyArn.length + wrappedKey.length + context.length);
  aad.set(FORMAT_BYTES);
  let offset = FORMAT_BYTES.length;
  for (const part of [keyArn, wrappedKey, context]) {
    offset = aad.writeUInt32BE(part.length, offset);
    aad.set(part, offset);
    offset += part.length;
  }
  return aad;
}

/** The limits that both sealing and parsing apply. */
function checkFields(keyArn: Uint8Array, wrappedKey: Uint8Array, contextJSON: Uint8Array | undefined): void {
  const tooLong = (name: string, size: number, limit: number) =>
    new MalformedPayloadError(`${name} is ${String(size)} bytes, over the ${String(limit)}-byte limit`);
  if (keyArn.length === 0) {
    throw new MalformedPayloadError(`${METADATA_KEY_ID} is missing or empty`);
  }
  if (keyArn.length > MAX_KEY_ARN_SIZE) {
    throw tooLong(METADATA_KEY_ID, keyArn.length, MAX_KEY_ARN_SIZE);
  }
  if (wrappedKey.length === 0) {
    throw new MalformedPayloadError(`${METADATA_DATA_KEY} is missing or empty`);
  }
  if (wrappedKey.length > MAX_WRAPPED_KEY_SIZE) {
    throw tooLong(METADATA_DATA_KEY, wrappedKey.length, MAX_WRAPPED_KEY_SIZE);
  }
  if (contextJSON !== undefined && contextJSON.length > MAX_CONTEXT_SIZE) {
    throw tooLong(METADATA_CONTEXT, contextJSON.length, MAX_CONTEXT_SIZE);
  }
}

function field(metadata: Record<string, Uint8Array>, name: string): Uint8Array | undefined {
  return Object.prototype.hasOwnProperty.call(metadata, name) ? metadata[name] : undefined;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.compare(a, b) === 0;
}

function truncate(value: Uint8Array): string {
  const max = 64;
  const text = Buffer.from(value.subarray(0, max)).toString('utf8');
  return value.length > max ? `${text}...` : text;
}

// Salts are drawn from a pool refilled in one system call per 256 payloads.
const saltPool = Buffer.alloc(SALT_SIZE * 256);
let saltOffset = saltPool.length;

function randomSalt(): Buffer {
  if (saltOffset === saltPool.length) {
    randomFillSync(saltPool);
    saltOffset = 0;
  }
  const salt = Buffer.from(saltPool.subarray(saltOffset, saltOffset + SALT_SIZE));
  saltOffset += SALT_SIZE;
  return salt;
}
