// The per-payload key derivation is HKDF-SHA256 as RFC 5869 defines it.

import assert from 'node:assert/strict';
import { hkdfSync, randomBytes } from 'node:crypto';
import { it } from 'node:test';

import { derive } from '../src/envelope';

void it('derives the payload key and commitment exactly as crypto.hkdfSync does', () => {
  for (let i = 0; i < 100; i++) {
    const dataKey = randomBytes(32);
    const salt = randomBytes(32);
    const { payloadKey, commitment } = derive(dataKey, salt);
    assert.deepEqual(payloadKey, Buffer.from(hkdfSync('sha256', dataKey, salt, 'kms-envelope-v1 derive', 32)));
    assert.deepEqual(commitment, Buffer.from(hkdfSync('sha256', dataKey, salt, 'kms-envelope-v1 commit', 32)));
  }
});
