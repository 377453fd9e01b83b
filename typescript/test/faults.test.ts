// KMS failing in every way the codec must survive: it fails closed with a
// KMSError that says whether retrying may help, never returns a payload
// unencrypted, bounds each call by kmsTimeout, and remembers only KMS
// refusing a wrapped key.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import {
  DecryptCommand,
  DescribeKeyCommand,
  GenerateDataKeyCommand,
  InvalidCiphertextException,
  KMSInternalException,
  KMSInvalidStateException,
  KMSServiceException,
} from '@aws-sdk/client-kms';

import { KMSCodec, type KMSCodecOptions } from '../src/codec';
import { InvalidKMSResponseError, KMSError, KMSTimeoutError } from '../src/errors';
import { ALIAS, FakeKMS, KEY_ARN, ManualClock, jsonPayload } from './helpers';

const input = [jsonPayload({ card: '4111 1111 1111 1111' }), jsonPayload(2)];

function setup(options: Partial<KMSCodecOptions> = {}) {
  const kms = new FakeKMS();
  const clock = new ManualClock();
  const codec = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, namespace: 'default', clock: clock.read, ...options });
  return { kms, clock, codec };
}

function kmsError(check: (err: KMSError) => void) {
  return (err: unknown) => {
    assert.ok(err instanceof KMSError, `got ${String(err)}`);
    check(err);
    return true;
  };
}

// KMS answers a caller without kms:GenerateDataKey or kms:Decrypt with an
// error the SDK has no class for.
const accessDenied = () =>
  new KMSServiceException({ name: 'AccessDeniedException', $fault: 'client', message: 'denied', $metadata: {} });

const throttled = () =>
  Object.assign(new Error('Rate exceeded'), { name: 'ThrottlingException', $fault: 'client', $metadata: {} });

void describe('GenerateDataKey failing', () => {
  void it('fails encode with a non-transient KMSError when KMS denies access', async () => {
    const { kms, codec } = setup();
    kms.mock.on(GenerateDataKeyCommand).rejects(accessDenied());
    await assert.rejects(
      codec.encode(input),
      kmsError((err) => {
        assert.equal(err.operation, 'GenerateDataKey');
        assert.equal(err.keyId, KEY_ARN);
        assert.equal(err.transient, false);
        assert.equal((err.cause as Error).name, 'AccessDeniedException');
        assert.equal(err.payloadIndex, 0);
        assert.match(err.message, /^encode payload 1 of 2: kms GenerateDataKey/);
        assert.doesNotMatch(err.message, /4111/);
      }),
    );
  });

  void it('reports throttling, KMS faults and network errors as transient', async () => {
    for (const cause of [
      throttled(),
      new KMSInternalException({ message: 'internal', $metadata: {} }),
      Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }),
    ]) {
      const { kms, codec } = setup();
      kms.mock.on(GenerateDataKeyCommand).rejects(cause);
      await assert.rejects(codec.encode(input), kmsError((err) => { assert.equal(err.transient, true, cause.name); }));
    }
  });

  void it('does not keep a failure: the next encode asks KMS again and succeeds', async () => {
    const { kms, codec } = setup();
    kms.mock.on(GenerateDataKeyCommand).rejectsOnce(throttled()).callsFake(() => ({
      KeyId: KEY_ARN,
      Plaintext: new Uint8Array(32).fill(7),
      CiphertextBlob: new Uint8Array([1, 2, 3]),
    }));
    await assert.rejects(codec.encode(input), KMSError);
    const encoded = await codec.encode(input);
    assert.equal(encoded.length, 2);
    assert.equal(kms.calls(GenerateDataKeyCommand), 2);
  });

  void it('refuses an answer with a plaintext key that is not 32 bytes, or an alias for KeyId', async () => {
    for (const answer of [
      { KeyId: KEY_ARN, Plaintext: new Uint8Array(16), CiphertextBlob: new Uint8Array(8) },
      { KeyId: ALIAS, Plaintext: new Uint8Array(32), CiphertextBlob: new Uint8Array(8) },
      { KeyId: KEY_ARN, Plaintext: new Uint8Array(32), CiphertextBlob: new Uint8Array(0) },
    ]) {
      const { kms, codec } = setup();
      kms.mock.on(GenerateDataKeyCommand).resolves(answer);
      await assert.rejects(
        codec.encode(input),
        kmsError((err) => {
          assert.ok(err.cause instanceof InvalidKMSResponseError);
          assert.equal(err.transient, false);
        }),
      );
    }
  });

  void it('gives up after kmsTimeout when KMS does not answer', async () => {
    const { kms, codec } = setup({ kmsTimeout: 50 });
    let signal: AbortSignal | undefined;
    kms.mock.on(GenerateDataKeyCommand).callsFake(() => new Promise(() => undefined));
    const sendSpy = kms.client.send.bind(kms.client);
    kms.client.send = ((command: never, options?: { abortSignal?: AbortSignal }) => {
      signal = options?.abortSignal;
      return sendSpy(command, options as never);
    }) as typeof kms.client.send;
    const started = performance.now();
    await assert.rejects(
      codec.encode(input),
      kmsError((err) => {
        assert.ok(err.cause instanceof KMSTimeoutError);
        assert.equal(err.transient, true);
      }),
    );
    const elapsed = performance.now() - started;
    assert.ok(elapsed >= 45 && elapsed < 1000, `gave up after ${String(elapsed)} ms`);
    assert.equal(signal?.aborted, true, 'the request was aborted');
  });
});

void describe('Decrypt failing', () => {
  async function sealed() {
    const { codec, kms } = setup();
    return { encoded: await codec.encode(input), kms };
  }

  void it('remembers KMS refusing a wrapped key for 10 seconds, then asks again', async () => {
    const { encoded, kms } = await sealed();
    kms.mock.on(DecryptCommand).rejects(new InvalidCiphertextException({ message: 'bad', $metadata: {} }));
    const clock = new ManualClock();
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, clock: clock.read });
    await assert.rejects(reader.decode(encoded), kmsError((err) => { assert.equal(err.refusedCiphertext, true); }));
    clock.advance(9_999);
    await assert.rejects(reader.decode(encoded), kmsError((err) => { assert.equal(err.refusedCiphertext, true); }));
    assert.equal(kms.calls(DecryptCommand), 1);
    clock.advance(2);
    await assert.rejects(reader.decode(encoded), KMSError);
    assert.equal(kms.calls(DecryptCommand), 2);
  });

  void it('does not remember throttling', async () => {
    const { encoded, kms } = await sealed();
    kms.mock.on(DecryptCommand).rejects(throttled());
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    await assert.rejects(reader.decode(encoded), KMSError);
    await assert.rejects(reader.decode(encoded), KMSError);
    assert.equal(kms.calls(DecryptCommand), 2);
  });

  void it('classifies a disabled key as neither transient nor a refused ciphertext', async () => {
    const { encoded, kms } = await sealed();
    kms.mock.on(DecryptCommand).rejects(new KMSInvalidStateException({ message: 'disabled', $metadata: {} }));
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    await assert.rejects(
      reader.decode(encoded),
      kmsError((err) => {
        assert.equal(err.transient, false);
        assert.equal(err.refusedCiphertext, false);
      }),
    );
  });

  void it('refuses an answer from another key or with a short plaintext key', async () => {
    for (const answer of [
      { KeyId: 'arn:aws:kms:us-east-1:111122223333:key/other', Plaintext: new Uint8Array(32) },
      { KeyId: KEY_ARN, Plaintext: new Uint8Array(31) },
    ]) {
      const { encoded, kms } = await sealed();
      kms.mock.on(DecryptCommand).resolves(answer);
      const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
      await assert.rejects(reader.decode(encoded), kmsError((err) => { assert.ok(err.cause instanceof InvalidKMSResponseError); }));
    }
  });

  void it('fails every waiter of a shared Decrypt, each with its own error naming its payload once', async () => {
    const { encoded, kms } = await sealed();
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    kms.mock.on(DecryptCommand).rejectsOnce(throttled());
    const results = await Promise.allSettled(Array.from({ length: 8 }, () => reader.decode(encoded)));
    assert.equal(kms.calls(DecryptCommand), 1);
    for (const result of results) {
      assert.equal(result.status, 'rejected');
      const err: unknown = result.reason;
      assert.ok(err instanceof KMSError);
      // Each caller's error names its payload once.
      assert.match(err.message, /^decode payload 1 of 2: kms Decrypt/);
      assert.equal(err.payloadIndex, 0);
      assert.equal((err.cause as Error).name, 'ThrottlingException');
    }

  });
});

void describe('DescribeKey failing', () => {
  void it('fails decode with a KMSError when the alias cannot be resolved, before any Decrypt', async () => {
    const { kms, codec } = setup();
    const encoded = await codec.encode(input);
    kms.mock.on(DescribeKeyCommand).rejects(accessDenied());
    const reader = new KMSCodec({ kms: kms.client, keyId: ALIAS });
    await assert.rejects(reader.decode(encoded), kmsError((err) => { assert.equal(err.operation, 'DescribeKey'); }));
    assert.equal(kms.calls(DecryptCommand), 0);
  });

  void it('remembers a failed DescribeKey for 5 seconds, then asks again', async () => {
    const { kms, codec } = setup();
    const encoded = await codec.encode(input);
    kms.mock.on(DescribeKeyCommand).rejectsOnce(throttled()).resolves({ KeyMetadata: { KeyId: 'k', Arn: KEY_ARN } });
    const clock = new ManualClock();
    const reader = new KMSCodec({ kms: kms.client, keyId: ALIAS, clock: clock.read });
    await assert.rejects(reader.decode(encoded), KMSError);
    clock.advance(4_999);
    await assert.rejects(reader.decode(encoded), KMSError);
    assert.equal(kms.calls(DescribeKeyCommand), 1);
    clock.advance(1);
    await reader.decode(encoded);
    assert.equal(kms.calls(DescribeKeyCommand), 2);
  });
});
