// The multi-Region rule of docs/FORMAT.md ("Multi-Region keys"): the
// allow-list matches the replicas of a multi-Region key and nothing else,
// and a codec with its own region unwraps a multi-Region payload with its
// own region's replica, falling back to other regions only after a
// transient failure.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';

import {
  DecryptCommand,
  GenerateDataKeyCommand,
  InvalidCiphertextException,
  KMSClient,
  KMSInternalException,
  KMSServiceException,
  NotFoundException,
} from '@aws-sdk/client-kms';
import type { Payload } from '@temporalio/common';
import { mockClient, type AwsClientStub } from 'aws-sdk-client-mock';

import { parseKeyArn, sameKeyArn } from '../src/arn';
import { KMSCodec, type KMSCodecOptions } from '../src/codec';
import { InvalidKMSResponseError, InvalidOptionsError, KMSError, KeyNotAllowedError } from '../src/errors';
import { comparable, jsonPayload } from './helpers';

const MRK_ID = 'mrk-1234abcd12ab34cd56ef1234567890ab';
const mrk = (region: string, account = '111122223333', partition = 'aws') =>
  `arn:${partition}:kms:${region}:${account}:key/${MRK_ID}`;
const SINGLE_EAST = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const SINGLE_WEST = 'arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

interface StoredKey {
  plaintext: Buffer;
  keyArn: string;
  context: string;
}

/**
 * KMS in several regions, each a real KMSClient behind aws-sdk-client-mock,
 * sharing multi-Region key material as KMS does: a data key wrapped by one
 * replica is unwrapped by any other, each region answers only for keys in
 * that region, and names in its answer the key ARN it was asked for.
 */
class RegionalKMS {
  private readonly blobs = new Map<string, StoredKey>();
  readonly clients = new Map<string, KMSClient>();
  readonly mocks = new Map<string, AwsClientStub<KMSClient>>();
  /** Every Decrypt call, in order, as `region KeyId`. */
  readonly decrypts: string[] = [];

  client(region: string): KMSClient {
    let client = this.clients.get(region);
    if (client === undefined) {
      client = new KMSClient({ region, credentials: { accessKeyId: 'test', secretAccessKey: 'test' } });
      this.clients.set(region, client);
      this.mocks.set(region, this.fake(region, mockClient(client)));
    }
    return client;
  }

  mock(region: string): AwsClientStub<KMSClient> {
    this.client(region);
    const mock = this.mocks.get(region);
    assert.ok(mock !== undefined);
    return mock;
  }

  /** Decrypt calls of one region. */
  decryptsIn(region: string): string[] {
    return this.decrypts.filter((call) => call.startsWith(`${region} `)).map((call) => call.slice(region.length + 1));
  }

  /** Payloads encrypted under keyArn, as a codec in keyArn's region writes them. */
  async write(keyArn: string, values: unknown[] = ['secret']): Promise<Payload[]> {
    const region = parseKeyArn(keyArn)?.region ?? '';
    const writer = new KMSCodec({ kms: this.client(region), keyId: keyArn, namespace: 'default' });
    const written = await writer.encode(values.map(jsonPayload));
    this.decrypts.length = 0;
    return written;
  }

  private fake(region: string, mock: AwsClientStub<KMSClient>): AwsClientStub<KMSClient> {
    mock.on(GenerateDataKeyCommand).callsFake((input: GenerateDataKeyCommand['input']) => {
      const keyArn = input.KeyId ?? '';
      const plaintext = randomBytes(32);
      const blob = randomBytes(48);
      this.blobs.set(blob.toString('hex'), { plaintext, keyArn, context: JSON.stringify(input.EncryptionContext) });
      return { KeyId: keyArn, Plaintext: Uint8Array.from(plaintext), CiphertextBlob: Uint8Array.from(blob) };
    });
    mock.on(DecryptCommand).callsFake((input: DecryptCommand['input']) => {
      const keyId = input.KeyId ?? '';
      this.decrypts.push(`${region} ${keyId}`);
      if (parseKeyArn(keyId)?.region !== region) {
        throw new NotFoundException({ message: `no key ${keyId} in ${region}`, $metadata: {} });
      }
      const stored = this.blobs.get(Buffer.from(input.CiphertextBlob ?? new Uint8Array()).toString('hex'));
      if (stored === undefined || !sameKeyArn(stored.keyArn, keyId) || stored.context !== JSON.stringify(input.EncryptionContext)) {
        throw new InvalidCiphertextException({ message: 'invalid ciphertext', $metadata: {} });
      }
      return { KeyId: keyId, Plaintext: Uint8Array.from(stored.plaintext) };
    });
    return mock;
  }
}

function reader(kms: RegionalKMS, options: Partial<KMSCodecOptions> & { keyId: string }, regions: string[] = []): KMSCodec {
  const region = options.region ?? 'us-west-2';
  const regionalKms = Object.fromEntries(regions.map((r) => [r, kms.client(r)]));
  return new KMSCodec({ kms: kms.client(region), namespace: 'default', region, regionalKms, ...options });
}

const throttled = () =>
  Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $fault: 'client', $metadata: {} });
const accessDenied = () =>
  new KMSServiceException({ name: 'AccessDeniedException', $fault: 'client', message: 'denied', $metadata: {} });

function kmsError(check: (err: KMSError) => void) {
  return (err: unknown) => {
    assert.ok(err instanceof KMSError, `got ${String(err)}`);
    check(err);
    return true;
  };
}

void describe('decrypting multi-Region payloads with an own region', () => {
  void it('asks the replica in its own region, naming the replica ARN, and never the writer region', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'), ['a', 'b']);
    const codec = reader(kms, { keyId: mrk('us-west-2') }, ['us-east-1']);

    const decoded = await codec.decode(payloads);

    assert.deepEqual(decoded.map(comparable), ['a', 'b'].map(jsonPayload).map(comparable));
    assert.deepEqual(kms.decryptsIn('us-west-2'), [mrk('us-west-2')]);
    assert.deepEqual(kms.decryptsIn('us-east-1'), []);
  });

  void it('needs no client for the writer region', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    const codec = reader(kms, { keyId: mrk('us-west-2') });

    assert.deepEqual((await codec.decode(payloads)).map(comparable), [comparable(jsonPayload('secret'))]);
    assert.deepEqual(kms.decrypts, [`us-west-2 ${mrk('us-west-2')}`]);
  });

  void it('refuses an answer that names another key than the replica it asked', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    kms.mock('us-west-2').on(DecryptCommand).resolves({ KeyId: mrk('us-east-1'), Plaintext: new Uint8Array(32) });
    const codec = reader(kms, { keyId: mrk('us-west-2') }, ['us-east-1']);

    await assert.rejects(
      codec.decode(payloads),
      kmsError((err) => {
        assert.ok(err.cause instanceof InvalidKMSResponseError);
        assert.equal(err.keyId, mrk('us-west-2'));
      }),
    );
    assert.deepEqual(kms.decryptsIn('us-east-1'), []);
  });

  void it('falls back after transient failures to the preferred regions with a client, in order, then the writer region', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    const calls: string[] = [];
    kms.mock('us-west-2').on(DecryptCommand).callsFake(() => {
      calls.push('us-west-2');
      throw throttled();
    });
    kms.mock('eu-west-1').on(DecryptCommand).callsFake((input: DecryptCommand['input']) => {
      calls.push(`eu-west-1 ${input.KeyId ?? ''}`);
      throw new KMSInternalException({ message: 'internal', $metadata: {} });
    });
    const codec = reader(
      kms,
      { keyId: mrk('us-west-2'), regionPreference: ['sa-east-1', 'eu-west-1', 'ap-south-1'] },
      ['us-east-1', 'eu-west-1', 'ap-south-1'],
    );

    assert.deepEqual((await codec.decode(payloads)).map(comparable), [comparable(jsonPayload('secret'))]);
    assert.deepEqual(calls, ['us-west-2', `eu-west-1 ${mrk('eu-west-1')}`]);
    assert.deepEqual(kms.decrypts, [`ap-south-1 ${mrk('ap-south-1')}`]);
  });

  void it('tries the writer region last when no preferred region answers', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    kms.mock('us-west-2').on(DecryptCommand).rejects(throttled());
    const codec = reader(kms, { keyId: mrk('us-west-2') }, ['us-east-1']);

    assert.deepEqual((await codec.decode(payloads)).map(comparable), [comparable(jsonPayload('secret'))]);
    assert.deepEqual(kms.decrypts, [`us-east-1 ${mrk('us-east-1')}`]);
  });

  void it('does not retry a refusal by its own replica in other regions', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    kms.mock('us-west-2').on(DecryptCommand).rejects(accessDenied());
    const codec = reader(kms, { keyId: mrk('us-west-2'), regionPreference: ['eu-west-1'] }, ['us-east-1', 'eu-west-1']);

    await assert.rejects(
      codec.decode(payloads),
      kmsError((err) => {
        assert.equal(err.transient, false);
        assert.equal((err.cause as Error).name, 'AccessDeniedException');
      }),
    );
    assert.deepEqual(kms.decrypts, []);
  });

  void it('fails with the last transient error when every replica fails', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    kms.mock('us-west-2').on(DecryptCommand).rejects(throttled());
    kms.mock('us-east-1').on(DecryptCommand).rejects(new KMSInternalException({ message: 'internal', $metadata: {} }));
    const codec = reader(kms, { keyId: mrk('us-west-2') }, ['us-east-1']);

    await assert.rejects(
      codec.decode(payloads),
      kmsError((err) => {
        assert.equal(err.transient, true);
        assert.equal(err.keyId, mrk('us-east-1'));
      }),
    );
  });
});

void describe('decrypting single-Region payloads with an own region', () => {
  void it('asks the client of the key region, naming the payload key ARN', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(SINGLE_EAST);
    const codec = reader(kms, { keyId: mrk('us-west-2'), decryptKeyIds: [SINGLE_EAST] }, ['us-east-1']);

    assert.deepEqual((await codec.decode(payloads)).map(comparable), [comparable(jsonPayload('secret'))]);
    assert.deepEqual(kms.decrypts, [`us-east-1 ${SINGLE_EAST}`]);
  });

  void it('asks its own client when the key region has none', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(SINGLE_EAST);
    const codec = reader(kms, { keyId: mrk('us-west-2'), decryptKeyIds: [SINGLE_EAST] });

    await assert.rejects(
      codec.decode(payloads),
      kmsError((err) => {
        assert.equal((err.cause as Error).name, 'NotFoundException');
      }),
    );
    assert.deepEqual(kms.decrypts, [`us-west-2 ${SINGLE_EAST}`]);
  });
});

void describe('the allow-list', () => {
  const refusedWithoutKMSCall = async (writtenUnder: string, allowed: string) => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(writtenUnder);
    const codec = reader(kms, { keyId: allowed }, ['us-east-1']);
    await assert.rejects(codec.decode(payloads), KeyNotAllowedError);
    assert.deepEqual(kms.decrypts, []);
  };

  void it('refuses a single-Region key of another region with the same key ID, with no KMS call', async () => {
    await refusedWithoutKMSCall(SINGLE_EAST, SINGLE_WEST);
  });

  void it('refuses a multi-Region key of another account, with no KMS call', async () => {
    await refusedWithoutKMSCall(mrk('us-east-1', '444455556666'), mrk('us-west-2'));
  });

  void it('refuses a multi-Region key of another partition, with no KMS call', async () => {
    await refusedWithoutKMSCall(mrk('us-east-1', '111122223333', 'aws-cn'), mrk('us-west-2'));
  });

  void it('refuses a whole batch before any KMS call when one payload is not allowed', async () => {
    const kms = new RegionalKMS();
    const payloads = [...(await kms.write(mrk('us-east-1'))), ...(await kms.write(mrk('us-east-1', '444455556666')))];
    const codec = reader(kms, { keyId: mrk('us-west-2') }, ['us-east-1']);

    await assert.rejects(codec.decode(payloads), KeyNotAllowedError);
    assert.deepEqual(kms.decrypts, []);
  });

  void it('allows the replicas of an allowed multi-Region key without an own region', async () => {
    const kms = new RegionalKMS();
    const payloads = await kms.write(mrk('us-east-1'));
    const codec = new KMSCodec({ kms: kms.client('us-east-1'), keyId: SINGLE_EAST, decryptKeyIds: [mrk('eu-west-1')] });

    assert.deepEqual((await codec.decode(payloads)).map(comparable), [comparable(jsonPayload('secret'))]);
    assert.deepEqual(kms.decrypts, [`us-east-1 ${mrk('us-east-1')}`]);
  });
});

void describe('regional options', () => {
  const kms = new RegionalKMS();
  const base = { kms: kms.client('us-west-2'), keyId: mrk('us-west-2') };

  void it('need an own region', () => {
    assert.throws(() => new KMSCodec({ ...base, regionalKms: { 'us-east-1': kms.client('us-east-1') } }), InvalidOptionsError);
    assert.throws(() => new KMSCodec({ ...base, regionPreference: ['us-east-1'] }), InvalidOptionsError);
  });

  void it('must not give another client for the own region', () => {
    assert.throws(
      () => new KMSCodec({ ...base, region: 'us-west-2', regionalKms: { 'us-west-2': kms.client('us-east-1') } }),
      /must not name options.region/,
    );
  });

  void it('must name each regional client region', () => {
    assert.throws(() => new KMSCodec({ ...base, region: 'us-west-2', regionalKms: { '': kms.client('us-east-1') } }), InvalidOptionsError);
  });
});
