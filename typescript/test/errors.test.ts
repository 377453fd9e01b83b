// The error classes as a user gets them: from the compiled package, with
// instanceof and name intact.

import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

const dist = path.resolve(__dirname, '..', 'dist', 'src', 'index.js');

void describe('error classes of the compiled package', () => {
  void it('is built (npm run build)', () => {
    assert.ok(existsSync(dist), `${dist} is missing: run npm run build`);
  });

  void it('keeps instanceof and name for every error class', async () => {
    const lib = (await import(dist)) as typeof import('../src/index');
    const cases: [Error, string][] = [
      [new lib.MalformedPayloadError('m'), 'MalformedPayloadError'],
      [new lib.AuthenticationFailedError('a'), 'AuthenticationFailedError'],
      [new lib.UnsupportedFormatError('u'), 'UnsupportedFormatError'],
      [new lib.KeyNotAllowedError('arn:aws:kms:us-east-1:1:key/k'), 'KeyNotAllowedError'],
      [new lib.NamespaceMismatchError('n'), 'NamespaceMismatchError'],
      [new lib.UnencryptedPayloadError(), 'UnencryptedPayloadError'],
      [new lib.NilPayloadError(), 'NilPayloadError'],
      [new lib.InvalidOptionsError('options.keyId'), 'InvalidOptionsError'],
      [new lib.KMSError('Decrypt', 'k', new lib.KMSTimeoutError('t')), 'KMSError'],
    ];
    for (const [err, name] of cases) {
      assert.ok(err instanceof lib.KMSCodecError, name);
      assert.ok(err instanceof Error, name);
      assert.equal(err.name, name);
      assert.equal(err.constructor.name, name);
      assert.match(String(err.stack), new RegExp(`^${name}: `));
    }
  });

  void it('says which payload of the batch failed, in the message and the stack', async () => {
    const lib = (await import(dist)) as typeof import('../src/index');
    const err = new lib.MalformedPayloadError('data too short').locate('decode', 1, 3);
    assert.equal(err.payloadIndex, 1);
    assert.equal(err.message, 'decode payload 2 of 3: data too short');
    assert.match(String(err.stack), /^MalformedPayloadError: decode payload 2 of 3: data too short\n\s+at /);
  });
});
