// Shared by the tests: the test vectors, and an in-process fake of KMS
// behind aws-sdk-client-mock that keeps its data keys the way KMS does.

import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

import {
  DecryptCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  InvalidCiphertextException,
  KMSClient,
  NotFoundException,
} from '@aws-sdk/client-kms';
import type { Payload } from '@temporalio/common';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';

/** The directory of the format's test vectors, from the repository root. */
export const VECTORS_DIR = path.resolve(__dirname, '..', '..', 'envelope', 'testdata');

/** One test vector, as docs/FORMAT.md describes its fields. */
export interface Vector {
  name: string;
  description: string;
  data_key: string;
  key_arn?: string;
  wrapped_key?: string;
  encryption_context?: Record<string, string>;
  salt?: string;
  input?: JSONPayload;
  payload_key?: string;
  commitment?: string;
  aad?: string;
  plaintext?: string;
  sealed: JSONPayload;
  error?: string;
}

/** A payload in the protobuf JSON form: base64 metadata values and data. */
export interface JSONPayload {
  metadata?: Record<string, string>;
  data?: string;
}

/** Every vector file of the directory, read now: new files are picked up without a change here. */
export function loadVectors(): Vector[] {
  return readdirSync(VECTORS_DIR)
    .filter((file) => file.endsWith('.json'))
    .sort()
    .map((file) => ({
      name: file.slice(0, -'.json'.length),
      ...(JSON.parse(readFileSync(path.join(VECTORS_DIR, file), 'utf8')) as Omit<Vector, 'name'>),
    }));
}

export function payloadFromJSON(p: JSONPayload): Payload {
  const metadata: Record<string, Uint8Array> = {};
  for (const [key, value] of Object.entries(p.metadata ?? {})) {
    metadata[key] = Buffer.from(value, 'base64');
  }
  return { metadata, data: Buffer.from(p.data ?? '', 'base64') };
}

/** A payload as a plain comparable value: metadata as a map of hex, data as hex. */
export function comparable(p: Payload): { metadata: Record<string, string>; data: string } {
  const metadata: Record<string, string> = {};
  for (const key of Object.keys(p.metadata ?? {}).sort()) {
    metadata[key] = Buffer.from(p.metadata?.[key] ?? new Uint8Array()).toString('hex');
  }
  return { metadata, data: Buffer.from(p.data ?? new Uint8Array()).toString('hex') };
}

export function hex(s: string | undefined): Buffer {
  if (s === undefined) {
    throw new Error('vector field missing');
  }
  return Buffer.from(s, 'hex');
}

export const KEY_ARN = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
export const OTHER_KEY_ARN = 'arn:aws:kms:us-east-1:111122223333:key/0987dcba-09fe-87dc-65ba-ab0987654321';
export const ALIAS = 'alias/temporal';

/** A JSON payload as the SDK's default converter writes it. */
export function jsonPayload(value: unknown): Payload {
  return { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from(JSON.stringify(value)) };
}

interface StoredKey {
  plaintext: Buffer;
  keyArn: string;
  context: string;
}

/**
 * A fake of KMS on a real KMSClient, through aws-sdk-client-mock: it
 * generates random data keys, wraps them as opaque blobs and unwraps a blob
 * only with the key ARN and encryption context it was made with, as KMS
 * does. Aliases in `aliases` resolve to their key ARN.
 */
export class FakeKMS {
  readonly client = new KMSClient({
    region: 'us-east-1',
    credentials: { accessKeyId: 'test', secretAccessKey: 'test' },
  });
  readonly mock: AwsClientStub<KMSClient> = mockClient(this.client);
  readonly aliases = new Map<string, string>([[ALIAS, KEY_ARN]]);
  private readonly blobs = new Map<string, StoredKey>();

  constructor() {
    this.mock.on(GenerateDataKeyCommand).callsFake((input: GenerateDataKeyCommand['input']) => {
      const keyArn = this.resolve(input.KeyId ?? '');
      const plaintext = randomBytes(32);
      const blob = randomBytes(48);
      this.blobs.set(blob.toString('hex'), { plaintext, keyArn, context: contextKey(input.EncryptionContext) });
      return { KeyId: keyArn, Plaintext: Uint8Array.from(plaintext), CiphertextBlob: Uint8Array.from(blob) };
    });
    this.mock.on(DecryptCommand).callsFake((input: DecryptCommand['input']) => {
      const stored = this.blobs.get(Buffer.from(input.CiphertextBlob ?? new Uint8Array()).toString('hex'));
      if (stored === undefined || stored.keyArn !== input.KeyId || stored.context !== contextKey(input.EncryptionContext)) {
        throw new InvalidCiphertextException({ message: 'invalid ciphertext', $metadata: {} });
      }
      return { KeyId: stored.keyArn, Plaintext: Uint8Array.from(stored.plaintext) };
    });
    this.mock.on(DescribeKeyCommand).callsFake((input: DescribeKeyCommand['input']) => ({
      KeyMetadata: { KeyId: 'k', Arn: this.resolve(input.KeyId ?? '') },
    }));
  }

  /** How many calls of one command the client sent. */
  calls(command: new (...args: never[]) => unknown): number {
    return this.mock.calls().filter((call) => call.args[0] instanceof command).length;
  }

  /** The encryption contexts of the GenerateDataKey calls so far. */
  generateContexts(): (Record<string, string> | undefined)[] {
    return this.mock.commandCalls(GenerateDataKeyCommand).map((call) => call.args[0].input.EncryptionContext);
  }

  private resolve(keyId: string): string {
    const arn = this.aliases.get(keyId) ?? keyId;
    if (!arn.startsWith('arn:')) {
      throw new NotFoundException({ message: `no key ${keyId}`, $metadata: {} });
    }
    return arn;
  }
}

function contextKey(context: Record<string, string> | undefined): string {
  return JSON.stringify(Object.entries(context ?? {}).sort(([a], [b]) => (a < b ? -1 : 1)));
}

/** A clock the test moves by hand. */
export class ManualClock {
  constructor(public now = 1_700_000_000_000) {}
  readonly read = (): number => this.now;
  advance(ms: number): void {
    this.now += ms;
  }
}
