// Key ARNs taken apart, and which of them name the same key material.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { isKeyArn, parseKeyArn, sameKeyArn } from '../src/arn';

const MRK_EAST = 'arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab';
const MRK_WEST = 'arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab';
const SINGLE_EAST = 'arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
const SINGLE_WEST = 'arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';

void describe('parseKeyArn', () => {
  void it('takes a key ARN apart', () => {
    assert.deepEqual(parseKeyArn(MRK_EAST), {
      partition: 'aws',
      region: 'us-east-1',
      account: '111122223333',
      keyId: 'mrk-1234abcd12ab34cd56ef1234567890ab',
    });
  });

  void it('rejects what is not a key ARN', () => {
    for (const id of [
      'alias/temporal',
      'arn:aws:kms:us-east-1:111122223333:alias/temporal',
      '1234abcd-12ab-34cd-56ef-1234567890ab',
      'arn:aws:s3:us-east-1:111122223333:key/x',
      'arn::kms:us-east-1:111122223333:key/x',
      'arn:aws:kms:us-east-1:111122223333:key/',
      'arn:aws:kms:us-east-1',
    ]) {
      assert.equal(parseKeyArn(id), undefined, id);
      assert.equal(isKeyArn(id), false, id);
    }
  });
});

void describe('sameKeyArn', () => {
  void it('matches the replicas of a multi-Region key in any region', () => {
    assert.equal(sameKeyArn(MRK_EAST, MRK_WEST), true);
    assert.equal(sameKeyArn(MRK_EAST, MRK_EAST), true);
  });

  void it('matches a single-Region key only exactly', () => {
    assert.equal(sameKeyArn(SINGLE_EAST, SINGLE_EAST), true);
    assert.equal(sameKeyArn(SINGLE_EAST, SINGLE_WEST), false);
  });

  void it('does not match a multi-Region key of another account or partition', () => {
    assert.equal(sameKeyArn(MRK_EAST, MRK_WEST.replace('111122223333', '444455556666')), false);
    assert.equal(sameKeyArn(MRK_EAST, MRK_WEST.replace('arn:aws:', 'arn:aws-cn:')), false);
  });

  void it('matches anything that is not a key ARN only identically', () => {
    assert.equal(sameKeyArn('alias/temporal', 'alias/temporal'), true);
    assert.equal(sameKeyArn('alias/mrk-a', 'alias/mrk-b'), false);
  });
});
