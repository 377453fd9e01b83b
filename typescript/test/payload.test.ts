// The protobuf encoding of a payload that the codec encrypts is the one
// protobufjs writes (map entries sorted), at every length of data.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { it } from 'node:test';

import { temporal } from '@temporalio/proto';

import { marshalPayload, unmarshalPayload } from '../src/envelope';
import { comparable } from './helpers';

const PayloadProto = temporal.api.common.v1.Payload;

void it('encodes payloads as protobufjs does, for data of every varint length', () => {
  for (const size of [0, 1, 127, 128, 300, 16_383, 16_384, 70_000, 2_097_152]) {
    const payload = { metadata: { b: Buffer.from('2'), a: Buffer.from('1') }, data: randomBytes(size) };
    const sorted = { metadata: { a: payload.metadata.a, b: payload.metadata.b }, data: payload.data };
    const bytes = marshalPayload(payload);
    assert.deepEqual(Buffer.from(bytes), Buffer.from(PayloadProto.encode(sorted).finish()), `data of ${String(size)} bytes`);
    assert.deepEqual(comparable(unmarshalPayload(bytes)), comparable(payload));
  }
});

void it('keeps external payload references', () => {
  const payload = PayloadProto.fromObject({ data: Buffer.from('x'), externalPayloads: [{ sizeBytes: 1234 }] });
  const decoded = unmarshalPayload(marshalPayload(payload));
  assert.equal(Number(decoded.externalPayloads?.[0]?.sizeBytes), 1234);
  assert.deepEqual(Buffer.from(marshalPayload(payload)), Buffer.from(PayloadProto.encode(payload).finish()));
});
