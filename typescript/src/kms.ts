/**
 * The codec's calls to AWS KMS, each bounded by a timeout that covers the
 * AWS SDK's retries too, and checked for a usable answer.
 *
 * @module
 */

import {
  DecryptCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  type KMSClient,
} from '@aws-sdk/client-kms';

import { isKeyArn } from './arn';
import type { EncryptionContext } from './context';
import { DATA_KEY_SIZE } from './envelope';
import { InvalidKMSResponseError, KMSError, KMSTimeoutError, type KMSOperation } from './errors';

/** A data key that KMS generated: its plaintext, its wrapped form and the key that wrapped it. */
export interface GeneratedDataKey {
  /** The key ARN KMS reports, even when the request named an alias. */
  keyArn: string;
  plaintext: Uint8Array;
  wrapped: Uint8Array;
}

/** Counts of the KMS calls a codec made, by operation. */
export type KMSCallCounter = (operation: KMSOperation) => void;

/** The KMS client, timeout and call counter that every cache of the codec shares. */
export class KMS {
  constructor(
    private readonly client: KMSClient,
    private readonly timeoutMs: number,
    private readonly onCall: KMSCallCounter = () => undefined,
  ) {}

  /** GenerateDataKey (AES_256) under `keyId` bound to `context`. */
  async generateDataKey(keyId: string, context: EncryptionContext): Promise<GeneratedDataKey> {
    return this.call('GenerateDataKey', keyId, async (abortSignal) => {
      const out = await this.client.send(
        new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', EncryptionContext: { ...context } }),
        { abortSignal },
      );
      if (out.KeyId === undefined || !isKeyArn(out.KeyId)) {
        throw new InvalidKMSResponseError('KeyId is not a key ARN');
      }
      checkPlaintext(out.Plaintext);
      if (out.CiphertextBlob === undefined || out.CiphertextBlob.length === 0) {
        throw new InvalidKMSResponseError('CiphertextBlob is empty');
      }
      return { keyArn: out.KeyId, plaintext: out.Plaintext, wrapped: out.CiphertextBlob };
    });
  }

  /**
   * Decrypt of `wrapped` naming `keyArn`, so that KMS refuses a wrapped key
   * of any other key rather than trusting the payload's claim.
   */
  async decrypt(keyArn: string, wrapped: Uint8Array, context: EncryptionContext): Promise<Uint8Array> {
    return this.call('Decrypt', keyArn, async (abortSignal) => {
      const out = await this.client.send(
        new DecryptCommand({ KeyId: keyArn, CiphertextBlob: wrapped, EncryptionContext: { ...context } }),
        { abortSignal },
      );
      if (out.KeyId !== keyArn) {
        throw new InvalidKMSResponseError(`decrypted with key ${JSON.stringify(out.KeyId ?? '')}, not the payload's key`);
      }
      checkPlaintext(out.Plaintext);
      return out.Plaintext;
    });
  }

  /** DescribeKey: the key ARN that a key ID or alias stands for. */
  async describeKeyArn(keyId: string): Promise<string> {
    return this.call('DescribeKey', keyId, async (abortSignal) => {
      const out = await this.client.send(new DescribeKeyCommand({ KeyId: keyId }), { abortSignal });
      const arn = out.KeyMetadata?.Arn;
      if (arn === undefined || !isKeyArn(arn)) {
        throw new InvalidKMSResponseError('DescribeKey returned no key ARN');
      }
      return arn;
    });
  }

  // call runs one KMS operation with the timeout, and turns any failure
  // into a KMSError.
  private async call<T>(operation: KMSOperation, keyId: string, run: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.onCall(operation);
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new KMSTimeoutError(`no answer within ${String(this.timeoutMs)} ms`);
        controller.abort(err);
        reject(err);
      }, this.timeoutMs);
    });
    try {
      // The race ends the wait even if the SDK is between retries when the
      // signal fires.
      return await Promise.race([run(controller.signal), timedOut]);
    } catch (err) {
      throw new KMSError(operation, keyId, controller.signal.aborted ? controller.signal.reason : err);
    } finally {
      clearTimeout(timer);
    }
  }
}

function checkPlaintext(plaintext: Uint8Array | undefined): asserts plaintext is Uint8Array {
  if (plaintext?.length !== DATA_KEY_SIZE) {
    throw new InvalidKMSResponseError(
      `plaintext data key is ${String(plaintext?.length ?? 0)} bytes, want ${String(DATA_KEY_SIZE)}`,
    );
  }
}
