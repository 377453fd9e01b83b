// The canonical JSON of the encryption context: what encoders write, and
// the only form decoders accept.

import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { marshalContext, parseContext } from '../src/context';
import { MalformedPayloadError } from '../src/errors';

const text = (bytes: Uint8Array | undefined) => (bytes === undefined ? undefined : Buffer.from(bytes).toString('utf8'));

void describe('marshalContext', () => {
  void it('writes nothing for an empty context', () => {
    assert.equal(marshalContext({}), undefined);
  });

  void it('sorts keys by the byte order of their UTF-8 encoding, not by UTF-16 code units', () => {
    // U+FF01 sorts after U+1F600 in UTF-16 (a surrogate pair starts with
    // 0xD83D) but before it in UTF-8 (EF BC 81 < F0 9F 98 80).
    assert.equal(text(marshalContext({ '\u{1F600}': 'b', '\uFF01': 'a', z: 'c', A: 'd' })), '{"A":"d","z":"c","！":"a","😀":"b"}');
  });

  void it('escapes exactly the canonical set, in the canonical way', () => {
    const all = '"\\\b\t\n\f\r\u0000\u001f\u007f/<>&\u2028\u2029é';
    assert.equal(
      text(marshalContext({ k: all })),
      '{"k":"\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u001f\u007f/<>&\u2028\u2029é"}',
    );
  });

  void it('refuses a lone surrogate, which UTF-8 cannot hold', () => {
    assert.throws(() => marshalContext({ k: '\udc00' }), MalformedPayloadError);
  });
});

void describe('parseContext', () => {
  void it('reads back what marshalContext writes', () => {
    const context = { app: 'billing', 'temporal-namespace': 'payments', odd: '\u0001"\\\u2028' };
    const bytes = marshalContext(context);
    assert.ok(bytes !== undefined);
    assert.deepEqual({ ...parseContext(bytes) }, context);
  });

  void it('keeps a "__proto__" key as an ordinary member', () => {
    const parsed = parseContext(Buffer.from('{"__proto__":"x"}'));
    assert.equal(Object.getOwnPropertyDescriptor(parsed, '__proto__')?.value, 'x');
  });

  const refused: [string, Buffer][] = [
    ['white space', Buffer.from('{"a": "b"}')],
    ['unsorted keys', Buffer.from('{"b":"1","a":"2"}')],
    ['a duplicate key', Buffer.from('{"a":"1","a":"1"}')],
    ['an escaped slash', Buffer.from('{"a":"\\/"}')],
    ['an unnecessary \\u escape', Buffer.from('{"a":"\\u0041"}')],
    ['an upper-case \\u escape', Buffer.from('{"a":"\\u001F"}')],
    ['a raw control character', Buffer.from('{"a":"\u0001"}')],
    ['an escaped lone surrogate', Buffer.from('{"a":"\\ud800"}')],
    ['invalid UTF-8', Buffer.from([0x7b, 0x22, 0x61, 0x22, 0x3a, 0x22, 0xff, 0x22, 0x7d])],
    ['a number value', Buffer.from('{"a":1}')],
    ['an array', Buffer.from('["a"]')],
    ['null', Buffer.from('null')],
    ['an empty object', Buffer.from('{}')],
    ['text that is not JSON', Buffer.from('a=b')],
  ];
  for (const [what, bytes] of refused) {
    void it(`refuses ${what} as malformed`, () => {
      assert.throws(() => parseContext(bytes), MalformedPayloadError);
    });
  }
});
