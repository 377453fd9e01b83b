// The codec's behaviour, point by point as the Go codec's: data keys and
// their limits, the allow-list, pass-through, single flight and expiry,
// with KMS faked in process (aws-sdk-client-mock) and an injectable clock.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DecryptCommand, DescribeKeyCommand, GenerateDataKeyCommand } from '@aws-sdk/client-kms';
import type { Payload } from '@temporalio/common';

import { KMSCodec, NAMESPACE_CONTEXT_KEY, type KMSCodecOptions } from '../src/codec';
import { parseEnvelope } from '../src/envelope';
import {
  InvalidOptionsError,
  KMSError,
  KeyNotAllowedError,
  MalformedPayloadError,
  NamespaceMismatchError,
  NilPayloadError,
  UnencryptedPayloadError,
} from '../src/errors';
import { ALIAS, FakeKMS, KEY_ARN, ManualClock, OTHER_KEY_ARN, comparable, jsonPayload } from './helpers';

function setup(options: Partial<KMSCodecOptions> = {}) {
  const kms = new FakeKMS();
  const clock = new ManualClock();
  const codec = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, namespace: 'default', clock: clock.read, ...options });
  return { kms, clock, codec };
}

function payloads(n: number, size = 16): Payload[] {
  return Array.from({ length: n }, (_, i) => jsonPayload({ i, pad: 'x'.repeat(size) }));
}

function metadataText(p: Payload | undefined, key: string): string | undefined {
  const value = p?.metadata?.[key];
  return value === undefined ? undefined : Buffer.from(value).toString();
}

void describe('encode and decode', () => {
  void it('encrypts every payload into kms-envelope-v1 and decrypts it back', async () => {
    const { codec } = setup();
    const input = [...payloads(3), { metadata: { encoding: Buffer.from('binary/null') } }];
    const encoded = await codec.encode(input);
    assert.equal(encoded.length, input.length);
    for (const p of encoded) {
      assert.equal(metadataText(p, 'encoding'), 'binary/encrypted');
      assert.equal(metadataText(p, 'encryption-format'), 'kms-envelope-v1');
      assert.equal(metadataText(p, 'encryption-key-id'), KEY_ARN);
      assert.equal(metadataText(p, 'encryption-context'), '{"temporal-namespace":"default"}');
    }
    const decoded = await codec.decode(encoded);
    assert.deepEqual(decoded.map(comparable), input.map(comparable));
  });

  void it('binds data keys to the namespace of the serialization context, else the configured one', async () => {
    const { codec, kms } = setup({ encryptionContext: { app: 'billing' } });
    const [inContext] = await codec.encode(payloads(1), { type: 'workflow', namespace: 'payments', workflowId: 'w' });
    const [configured] = await codec.encode(payloads(1));
    assert.equal(metadataText(inContext, 'encryption-context'), '{"app":"billing","temporal-namespace":"payments"}');
    assert.equal(metadataText(configured, 'encryption-context'), '{"app":"billing","temporal-namespace":"default"}');
    assert.deepEqual(kms.generateContexts(), [
      { app: 'billing', [NAMESPACE_CONTEXT_KEY]: 'payments' },
      { app: 'billing', [NAMESPACE_CONTEXT_KEY]: 'default' },
    ]);
  });

  void it('leaves the context out when there is neither a namespace nor a user context', async () => {
    const { codec } = setup({ namespace: undefined });
    const [p] = await codec.encode(payloads(1));
    assert.equal(p?.metadata?.['encryption-context'], undefined);
  });

  void it('uses one data key for many payloads and reads its own payloads without asking KMS', async () => {
    const { codec, kms } = setup();
    const encoded = [...(await codec.encode(payloads(50))), ...(await codec.encode(payloads(50)))];
    await codec.decode(encoded);
    assert.equal(kms.calls(GenerateDataKeyCommand), 1);
    assert.equal(kms.calls(DecryptCommand), 0);
  });

  void it('makes a fresh codec ask KMS Decrypt once per data key, with the payload key ARN and context', async () => {
    const { codec, kms } = setup({ maxPayloadsPerDataKey: 10 });
    const encoded = await codec.encode(payloads(25));
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    await reader.decode(encoded);
    await reader.decode(encoded);
    const calls = kms.mock.commandCalls(DecryptCommand);
    assert.equal(calls.length, 3);
    for (const call of calls) {
      assert.equal(call.args[0].input.KeyId, KEY_ARN);
      assert.deepEqual(call.args[0].input.EncryptionContext, { [NAMESPACE_CONTEXT_KEY]: 'default' });
    }
  });

  void it('records the key ARN that KMS returns when configured with an alias', async () => {
    const { codec, kms } = setup({ keyId: ALIAS });
    const encoded = await codec.encode(payloads(2));
    assert.equal(metadataText(encoded[0], 'encryption-key-id'), KEY_ARN);
    assert.equal(kms.mock.commandCalls(GenerateDataKeyCommand)[0]?.args[0].input.KeyId, ALIAS);
    // GenerateDataKey told the codec what the alias stands for.
    await codec.decode(encoded);
    assert.equal(kms.calls(DescribeKeyCommand), 0);
  });
});

void describe('data key limits', () => {
  void it('rotates the data key after maxPayloadsPerDataKey payloads', async () => {
    const { codec, kms } = setup({ maxPayloadsPerDataKey: 3 });
    const encoded = await codec.encode(payloads(10));
    assert.equal(kms.calls(GenerateDataKeyCommand), 4);
    const wrapped = new Set(encoded.map((p) => metadataText(p, 'encryption-data-key')));
    assert.equal(wrapped.size, 4);
  });

  void it('generates a data key per payload with maxPayloadsPerDataKey 1', async () => {
    const { codec, kms } = setup({ maxPayloadsPerDataKey: 1 });
    await codec.encode(payloads(5));
    assert.equal(kms.calls(GenerateDataKeyCommand), 5);
  });

  void it('rotates the data key after maxBytesPerDataKey, and gives an oversized payload a key of its own', async () => {
    const { codec, kms } = setup({ maxBytesPerDataKey: 100 });
    await codec.encode(payloads(2, 30)); // about 60 bytes each: two keys
    assert.equal(kms.calls(GenerateDataKeyCommand), 2);
    await codec.encode(payloads(1, 500)); // over the bound on its own
    assert.equal(kms.calls(GenerateDataKeyCommand), 3);
  });

  void it('rotates the data key once it is dataKeyMaxAge old', async () => {
    const { codec, kms, clock } = setup({ dataKeyMaxAge: 60_000 });
    await codec.encode(payloads(1));
    clock.advance(59_999);
    await codec.encode(payloads(1));
    assert.equal(kms.calls(GenerateDataKeyCommand), 1);
    clock.advance(1);
    await codec.encode(payloads(1));
    assert.equal(kms.calls(GenerateDataKeyCommand), 2);
  });

  void it('forgets an unwrapped data key after decryptCacheTtl', async () => {
    const { codec, kms } = setup();
    const encoded = await codec.encode(payloads(1));
    const clock = new ManualClock();
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, decryptCacheTtl: 1000, clock: clock.read });
    await reader.decode(encoded);
    clock.advance(999);
    await reader.decode(encoded);
    assert.equal(kms.calls(DecryptCommand), 1);
    clock.advance(2);
    await reader.decode(encoded);
    assert.equal(kms.calls(DecryptCommand), 2);
  });

  void it('keeps at most decryptCacheSize unwrapped data keys', async () => {
    const { codec, kms } = setup({ maxPayloadsPerDataKey: 1 });
    const encoded = await codec.encode(payloads(3));
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, decryptCacheSize: 2 });
    await reader.decode(encoded); // three keys, the first evicted
    await reader.decode(encoded.slice(1));
    assert.equal(kms.calls(DecryptCommand), 3);
    await reader.decode(encoded.slice(0, 1));
    assert.equal(kms.calls(DecryptCommand), 4);
  });
});

void describe('single flight', () => {
  void it('shares one GenerateDataKey among concurrent cold encodes of one scope', async () => {
    const { codec, kms } = setup();
    const results = await Promise.all(Array.from({ length: 64 }, () => codec.encode(payloads(2))));
    assert.equal(kms.calls(GenerateDataKeyCommand), 1);
    assert.equal(new Set(results.flat().map((p) => metadataText(p, 'encryption-data-key'))).size, 1);
  });

  void it('starts the next flight when the waiters of one use its data key up', async () => {
    const { codec, kms } = setup({ maxPayloadsPerDataKey: 10 });
    await Promise.all(Array.from({ length: 25 }, () => codec.encode(payloads(1))));
    assert.equal(kms.calls(GenerateDataKeyCommand), 3);
  });

  void it('shares one Decrypt among concurrent cold decodes of one wrapped key', async () => {
    const { codec, kms } = setup();
    const encoded = await codec.encode(payloads(4));
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    await Promise.all(Array.from({ length: 64 }, () => reader.decode(encoded)));
    assert.equal(kms.calls(DecryptCommand), 1);
  });

  void it('shares one DescribeKey among concurrent decodes that resolve an alias', async () => {
    const { codec, kms } = setup();
    const encoded = await codec.encode(payloads(1));
    const clock = new ManualClock();
    const reader = new KMSCodec({ kms: kms.client, keyId: ALIAS, dataKeyMaxAge: 60_000, clock: clock.read });
    await Promise.all(Array.from({ length: 16 }, () => reader.decode(encoded)));
    assert.equal(kms.calls(DescribeKeyCommand), 1);
    clock.advance(60_000); // the alias may have moved: ask again
    await reader.decode(encoded);
    assert.equal(kms.calls(DescribeKeyCommand), 2);
  });
});

void describe('allowed keys', () => {
  void it('refuses a payload under another key before any KMS call, even after good payloads in the batch', async () => {
    const { kms } = setup();
    const other = new KMSCodec({ kms: kms.client, keyId: OTHER_KEY_ARN, namespace: 'default' });
    const foreign = await other.encode(payloads(1));
    const { codec } = setup();
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    const own = await codec.encode(payloads(2));
    const before = kms.mock.calls().length;
    await assert.rejects(reader.decode([...own, ...foreign]), (err: unknown) => {
      assert.ok(err instanceof KeyNotAllowedError);
      assert.equal(err.name, 'KeyNotAllowedError');
      assert.equal(err.payloadIndex, 2);
      assert.equal(err.keyArn, OTHER_KEY_ARN);
      assert.match(err.message, /^decode payload 3 of 3: /);
      return true;
    });
    assert.equal(kms.mock.calls().length, before);
  });

  void it('decrypts payloads under a key ARN of decryptKeyIds', async () => {
    const { kms } = setup();
    const old = await new KMSCodec({ kms: kms.client, keyId: OTHER_KEY_ARN }).encode(payloads(1));
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, decryptKeyIds: [OTHER_KEY_ARN] });
    const [decoded] = await reader.decode(old);
    assert.ok(decoded !== undefined);
    assert.deepEqual(comparable(decoded), comparable(payloads(1)[0] ?? {}));
  });

  void it('accepts the key an alias stands for, learnt from DescribeKey', async () => {
    const { codec, kms } = setup();
    const encoded = await codec.encode(payloads(1));
    const reader = new KMSCodec({ kms: kms.client, keyId: ALIAS });
    await reader.decode(encoded);
    kms.aliases.set(ALIAS, OTHER_KEY_ARN);
    await reader.decode(encoded); // still within the resolution's lifetime
    assert.equal(kms.calls(DescribeKeyCommand), 1);
  });
});

void describe('pass-through and rollback', () => {
  const plain = jsonPayload({ hello: 'world' });
  const otherCodec: Payload = {
    metadata: { encoding: Buffer.from('binary/encrypted'), 'encryption-key-id': Buffer.from('test-key') },
    data: Buffer.from('opaque'),
  };

  void it('passes through payloads it did not encode, the same objects', async () => {
    const { codec, kms } = setup();
    const decoded = await codec.decode([plain, otherCodec]);
    assert.equal(decoded[0], plain);
    assert.equal(decoded[1], otherCodec);
    assert.equal(kms.mock.calls().length, 0);
  });

  void it('refuses unencrypted payloads with rejectUnencrypted', async () => {
    const { codec } = setup({ rejectUnencrypted: true });
    await assert.rejects(codec.decode([plain]), UnencryptedPayloadError);
  });

  void it('passes payloads through on encode with disableEncryption, and still decrypts', async () => {
    const { codec } = setup();
    const encoded = await codec.encode([plain]);
    const { codec: disabled, kms } = setup({ disableEncryption: true, keyId: undefined, decryptKeyIds: [KEY_ARN] });
    assert.deepEqual(await disabled.encode([plain]), [plain]);
    assert.equal(kms.calls(GenerateDataKeyCommand), 0);
    const [decoded] = await new KMSCodec({ kms: new FakeKMS().client, keyId: KEY_ARN }).decode([plain]);
    assert.equal(decoded, plain);
    assert.ok(parseEnvelope(encoded[0] ?? {}) !== undefined);
  });

  void it('decrypts with disableEncryption', async () => {
    const { codec, kms } = setup();
    const encoded = await codec.encode([plain]);
    const disabled = new KMSCodec({ kms: kms.client, disableEncryption: true, decryptKeyIds: [KEY_ARN] });
    const [decoded] = await disabled.decode(encoded);
    assert.deepEqual(comparable(decoded ?? {}), comparable(plain));
  });
});

void describe('namespaces', () => {
  void it('refuses a payload of another namespace with requireSameNamespace, before any KMS call', async () => {
    const { codec, kms } = setup();
    const encoded = await codec.encode(payloads(1), { type: 'workflow', namespace: 'other', workflowId: 'w' });
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN, namespace: 'default', requireSameNamespace: true });
    await assert.rejects(reader.decode(encoded), NamespaceMismatchError);
    await assert.rejects(reader.decode(encoded, { type: 'workflow', namespace: 'default', workflowId: 'w' }), NamespaceMismatchError);
    assert.equal(kms.calls(DecryptCommand), 0);
    await reader.decode(encoded, { type: 'activity', namespace: 'other', isLocal: false });
  });

  void it('lets KMS refuse a payload whose context was rewritten to another namespace', async () => {
    const { codec, kms } = setup();
    const [p] = await codec.encode(payloads(1));
    assert.ok(p?.metadata !== undefined && p.metadata !== null);
    p.metadata['encryption-context'] = Buffer.from('{"temporal-namespace":"other"}');
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    await assert.rejects(reader.decode([p]), (err: unknown) => err instanceof KMSError && err.refusedCiphertext);
  });
});

void describe('malformed payloads', () => {
  void it('refuses to encode a null payload, naming its position', async () => {
    const { codec } = setup();
    await assert.rejects(codec.encode([...payloads(1), null as unknown as Payload]), (err: unknown) => {
      assert.ok(err instanceof NilPayloadError);
      assert.equal(err.payloadIndex, 1);
      return true;
    });
  });

  void it('refuses to decode a null payload as malformed', async () => {
    const { codec } = setup();
    await assert.rejects(codec.decode([null as unknown as Payload]), MalformedPayloadError);
  });

  void it('refuses a context that is not canonical JSON before any KMS call', async () => {
    const { codec, kms } = setup();
    const [p] = await codec.encode(payloads(1));
    assert.ok(p?.metadata !== undefined && p.metadata !== null);
    p.metadata['encryption-context'] = Buffer.from('{ "temporal-namespace": "default" }');
    const reader = new KMSCodec({ kms: kms.client, keyId: KEY_ARN });
    await assert.rejects(reader.decode([p]), MalformedPayloadError);
    assert.equal(kms.calls(DecryptCommand), 0);
  });
});

void describe('options', () => {
  const kms = new FakeKMS().client;
  const invalid: [string, Partial<KMSCodecOptions>][] = [
    ['no keyId', { keyId: undefined }],
    ['temporal-namespace in encryptionContext', { encryptionContext: { [NAMESPACE_CONTEXT_KEY]: 'x' } }],
    ['an alias in decryptKeyIds', { decryptKeyIds: [ALIAS] }],
    ['a negative dataKeyMaxAge', { dataKeyMaxAge: -1 }],
    ['a fractional kmsTimeout', { kmsTimeout: 1.5 }],
    ['an encryptionContext over 4 KiB', { encryptionContext: { big: 'x'.repeat(5000) } }],
    ['a lone surrogate in encryptionContext', { encryptionContext: { app: '\ud800' } }],
  ];
  for (const [what, options] of invalid) {
    void it(`refuses ${what}`, () => {
      assert.throws(
        () => new KMSCodec({ kms, keyId: KEY_ARN, ...options }),
        (err: unknown) => err instanceof InvalidOptionsError && /^options\.\w+/.test(err.message),
      );
    });
  }
});
