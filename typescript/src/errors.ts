/**
 * The errors the codec throws. Each mirrors one of the Go codec's sentinel
 * errors, so that a caller can tell with `instanceof` (or by `name`) why a
 * payload was refused.
 *
 * @module
 */

/** The base class of every error the codec throws. */
export class KMSCodecError extends Error {
  /**
   * The position (from 0) of the payload at fault in the batch passed to
   * `encode` or `decode`, when the error is about one payload.
   */
  payloadIndex?: number;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    // `name` follows the subclass, so that it survives compilation and
    // shows in stack traces and logs.
    this.name = new.target.name;
  }

  /**
   * Returns a copy of this error that says where it happened: which
   * operation, which payload of how many. A copy, because one error may
   * reach several callers (those that shared a KMS call) and each names
   * its own payload.
   */
  locate(operation: 'encode' | 'decode', index: number, count: number): this {
    const copy = Object.assign(Object.create(Object.getPrototypeOf(this) as object) as this, this);
    Object.defineProperty(copy, 'cause', { value: this.cause, writable: true, configurable: true });
    copy.payloadIndex = index;
    copy.message = `${operation} payload ${String(index + 1)} of ${String(count)}: ${this.message}`;
    const stack = this.stack ?? '';
    const frames = stack.includes('\n') ? stack.slice(stack.indexOf('\n')) : '';
    copy.stack = `${this.name}: ${copy.message}${frames}`;
    return copy;
  }
}

/**
 * A payload marked kms-envelope-v1 has a missing, empty or oversized field,
 * data too short to hold an envelope, an encryption context that is not the
 * canonical JSON of an object of strings, or a decrypted body that is not a
 * payload. No KMS call is made for it.
 */
export class MalformedPayloadError extends KMSCodecError {}

/**
 * The key commitment or the AES-GCM tag did not verify: the payload was
 * altered after it was sealed, or it was sealed under another data key.
 */
export class AuthenticationFailedError extends KMSCodecError {}

/**
 * The payload is `binary/encrypted` in an `encryption-format` this codec
 * does not implement. Such a payload is never passed through.
 */
export class UnsupportedFormatError extends KMSCodecError {}

/**
 * The payload names a master key that is neither the key the codec
 * encrypts with nor one of `decryptKeyIds`. No KMS call is made for it.
 */
export class KeyNotAllowedError extends KMSCodecError {
  constructor(
    /** The key ARN the payload names. */
    readonly keyArn: string,
  ) {
    super(`payload's master key is not allowed for decryption: ${keyArn}`);
  }
}

/**
 * `requireSameNamespace` is set and a payload's encryption context names
 * another namespace than the one the codec decodes for. No KMS call is
 * made for it.
 */
export class NamespaceMismatchError extends KMSCodecError {}

/** `rejectUnencrypted` is set and a payload is not encrypted. */
export class UnencryptedPayloadError extends KMSCodecError {
  constructor() {
    super('payload is not encrypted');
  }
}

/** `encode` was given a null or undefined payload. */
export class NilPayloadError extends KMSCodecError {
  constructor() {
    super('payload is nil');
  }
}

/** The codec's constructor was given options it cannot work with; the message names the option. */
export class InvalidOptionsError extends KMSCodecError {}

/** The KMS operations the codec calls. */
export type KMSOperation = 'GenerateDataKey' | 'Decrypt' | 'DescribeKey';

/**
 * KMS answered a call with something unusable: a plaintext data key that is
 * not 32 bytes, or a key ARN other than the one asked for. It is the
 * `cause` of a {@link KMSError}.
 */
export class InvalidKMSResponseError extends KMSCodecError {}

/** The KMS call took longer than `kmsTimeout`. It is the `cause` of a {@link KMSError}. */
export class KMSTimeoutError extends KMSCodecError {}

// The error codes that KMS answers with when retrying later may succeed.
const transientCodes = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'RequestLimitExceeded',
  'LimitExceededException',
  'KMSInternalException',
  'DependencyTimeoutException',
]);

/**
 * A failed KMS call. `cause` is the AWS SDK's error (a `KMSServiceException`
 * subclass such as `InvalidCiphertextException`, or a network error), a
 * {@link KMSTimeoutError} or an {@link InvalidKMSResponseError}.
 */
export class KMSError extends KMSCodecError {
  constructor(
    /** The KMS operation that failed. */
    readonly operation: KMSOperation,
    /** The key ID, alias or key ARN the call named. */
    readonly keyId: string,
    cause: unknown,
  ) {
    super(`kms ${operation} (key ${keyId}): ${describe(cause)}`, { cause });
  }

  /**
   * Whether retrying the same call later may succeed: throttling, KMS-side
   * faults, timeouts and network errors. KMS refusing the request itself
   * (access denied, invalid ciphertext, disabled key) is not transient.
   */
  get transient(): boolean {
    const cause = this.cause;
    if (cause instanceof InvalidKMSResponseError) {
      return false;
    }
    const fault = serviceFault(cause);
    if (fault === undefined) {
      return true; // a timeout, an aborted request or a broken connection
    }
    if (transientCodes.has((cause as Error).name)) {
      return true;
    }
    return fault !== 'client';
  }

  /**
   * Whether KMS answered a Decrypt by refusing the wrapped data key itself
   * (`InvalidCiphertextException`, or `IncorrectKeyException` for a blob
   * made under another key): the payload that carries it was altered or
   * does not belong to the key and context it names.
   */
  get refusedCiphertext(): boolean {
    if (this.operation !== 'Decrypt' || serviceFault(this.cause) === undefined) {
      return false;
    }
    const code = (this.cause as Error).name;
    return code === 'InvalidCiphertextException' || code === 'IncorrectKeyException';
  }
}

// serviceFault returns the `$fault` of an error the AWS service answered
// with, and undefined for any other error.
function serviceFault(err: unknown): string | undefined {
  if (typeof err !== 'object' || err === null || !('$fault' in err)) {
    return undefined;
  }
  const fault = err.$fault;
  return typeof fault === 'string' ? fault : undefined;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    return `${err.name}: ${err.message}`;
  }
  return String(err);
}
