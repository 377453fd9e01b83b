// Every test vector of envelope/testdata, read at run time: this package
// reads and writes kms-envelope-v1 exactly as docs/FORMAT.md specifies.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';

import { KMSCodec } from '../src/codec';
import { SealingKey, marshalPayload, parseEnvelope, unmarshalPayload } from '../src/envelope';
import {
  AuthenticationFailedError,
  MalformedPayloadError,
  UnsupportedFormatError,
  type KMSCodecError,
} from '../src/errors';
import { comparable, hex, loadVectors, payloadFromJSON, type Vector } from './helpers';

const vectors = loadVectors();

// The error kinds a vector can name, as docs/FORMAT.md spells them.
const errorClasses: Record<string, new (...args: never[]) => KMSCodecError> = {
  malformed: MalformedPayloadError,
  authentication: AuthenticationFailedError,
  'unsupported-format': UnsupportedFormatError,
};

// openVector does what a decoder does with a payload, the vector standing
// in for KMS: parse, read the context KMS would be given, open.
function openVector(v: Vector) {
  const envelope = parseEnvelope(payloadFromJSON(v.sealed));
  if (envelope === undefined) {
    return undefined;
  }
  envelope.encryptionContext();
  return envelope.open(hex(v.data_key));
}

// A codec whose KMS answers Decrypt with the vector's data key.
function codecFor(v: Vector, keyArn: string) {
  const client = new KMSClient({ region: 'us-east-1', credentials: { accessKeyId: 'x', secretAccessKey: 'x' } });
  const mock = mockClient(client);
  mock.on(DecryptCommand).resolves({ KeyId: keyArn, Plaintext: hex(v.data_key) });
  return { codec: new KMSCodec({ kms: client, keyId: keyArn }), mock };
}

void describe('test vectors', () => {
  void it('has vectors of every kind to check', () => {
    for (const prefix of ['good_', 'fail_', 'pass_']) {
      assert.ok(vectors.some((v) => v.name.startsWith(prefix)), `no ${prefix}* vector in envelope/testdata`);
    }
    assert.ok(vectors.length >= 20, `only ${String(vectors.length)} vectors`);
  });

  for (const v of vectors) {
    if (v.name.startsWith('good_')) {
      void describe(v.name, () => {
        const input = payloadFromJSON(v.input ?? {});
        const keyArn = v.key_arn ?? '';
        const key = () =>
          new SealingKey(hex(v.data_key), {
            keyArn,
            wrappedKey: hex(v.wrapped_key),
            encryptionContext: v.encryption_context ?? {},
          });

        void it('opens sealed to input', () => {
          const opened = openVector(v);
          assert.ok(opened !== undefined);
          assert.deepEqual(comparable(opened), comparable(input));
        });

        void it('seals the recorded plaintext with the recorded salt to sealed, byte for byte', () => {
          const sealed = key().seal(Buffer.from(v.plaintext ?? '', 'hex'), hex(v.salt)); // empty: omitted
          assert.deepEqual(comparable(sealed), comparable(payloadFromJSON(v.sealed)));
        });

        void it('serializes input so that it round-trips, and seals and opens it', () => {
          const plaintext = marshalPayload(input);
          assert.deepEqual(comparable(unmarshalPayload(plaintext)), comparable(input));
          // Sorted map entries, as the Go codec writes them: the recorded bytes.
          assert.equal(Buffer.from(plaintext).toString('hex'), v.plaintext ?? '');
          const sealed = key().seal(plaintext, hex(v.salt));
          const envelope = parseEnvelope(sealed);
          assert.ok(envelope !== undefined);
          assert.deepEqual(comparable(envelope.open(hex(v.data_key))), comparable(input));
        });

        void it('decodes through the codec, giving KMS the recorded context', async () => {
          const { codec, mock } = codecFor(v, keyArn);
          const [decoded] = await codec.decode([payloadFromJSON(v.sealed)]);
          assert.ok(decoded !== undefined);
          assert.deepEqual(comparable(decoded), comparable(input));
          const calls = mock.commandCalls(DecryptCommand);
          assert.equal(calls.length, 1);
          assert.deepEqual({ ...calls[0]?.args[0].input.EncryptionContext }, v.encryption_context ?? {});
        });
      });
    } else if (v.name.startsWith('fail_')) {
      void it(`${v.name}: fails as ${v.error ?? '?'}`, () => {
        const want = errorClasses[v.error ?? ''];
        assert.ok(want !== undefined, `unknown error kind ${String(v.error)}`);
        assert.throws(() => openVector(v), want);
      });
    } else if (v.name.startsWith('pass_')) {
      void it(`${v.name}: is passed through unchanged`, async () => {
        assert.equal(v.error, 'not-encrypted');
        assert.equal(openVector(v), undefined);
        const sealed = payloadFromJSON(v.sealed);
        const { codec, mock } = codecFor(v, 'arn:aws:kms:us-east-1:111122223333:key/k');
        const [decoded] = await codec.decode([sealed]);
        assert.equal(decoded, sealed);
        assert.equal(mock.calls().length, 0);
      });
    } else {
      void it(`${v.name}: is named good_, fail_ or pass_`, () => {
        assert.fail('vector name must start with good_, fail_ or pass_');
      });
    }
  }
});
