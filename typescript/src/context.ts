/**
 * The canonical JSON of a KMS encryption context, as docs/FORMAT.md
 * specifies it: an object of string members, keys sorted by the byte order
 * of their UTF-8 encoding, no white space, and one escaping for each
 * character.
 *
 * @module
 */

import { MalformedPayloadError } from './errors';

/** An encryption context: what KMS binds a wrapped data key to. */
export type EncryptionContext = Readonly<Record<string, string>>;

const utf8 = new TextEncoder();
const strictUTF8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

// The short escapes of the canonical form; every other character below
// U+0020 is written \u00xx.
const shortEscapes: Readonly<Record<string, string>> = {
  '"': '\\"',
  '\\': '\\\\',
  '\b': '\\b',
  '\t': '\\t',
  '\n': '\\n',
  '\f': '\\f',
  '\r': '\\r',
};

// eslint-disable-next-line no-control-regex -- the control characters are what it finds
const needsEscape = /["\\\u0000-\u001f]/g;

function quote(s: string): string {
  const escaped = s.replace(needsEscape, (c) => shortEscapes[c] ?? `\\u00${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  return `"${escaped}"`;
}

/**
 * Returns the canonical JSON of `context` as UTF-8 bytes, or undefined for
 * an empty context (which payloads leave out). A key or value that is not
 * well-formed Unicode (a lone surrogate) cannot be written in UTF-8 and is
 * refused.
 */
export function marshalContext(context: EncryptionContext): Uint8Array | undefined {
  const entries = Object.entries(context).map(([key, value]) => {
    if (typeof value !== 'string') {
      throw new MalformedPayloadError(`encryption context value of ${JSON.stringify(key)} is not a string`);
    }
    if (!key.isWellFormed() || !value.isWellFormed()) {
      throw new MalformedPayloadError('encryption context is not valid Unicode');
    }
    return { key, keyBytes: utf8.encode(key), value };
  });
  if (entries.length === 0) {
    return undefined;
  }
  entries.sort((a, b) => Buffer.compare(a.keyBytes, b.keyBytes));
  const members = entries.map(({ key, value }) => `${quote(key)}:${quote(value)}`);
  return utf8.encode(`{${members.join(',')}}`);
}

/**
 * Parses an `encryption-context` metadata value. It must be exactly the
 * canonical JSON of an object of strings: anything else (invalid UTF-8,
 * white space, unsorted or duplicate keys, another escaping, a value that
 * is not a string) is malformed.
 */
export function parseContext(bytes: Uint8Array): Record<string, string> {
  const malformed = (why: string) => new MalformedPayloadError(`encryption-context ${why}`);
  let text: string;
  try {
    text = strictUTF8.decode(bytes);
  } catch {
    throw malformed('is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw malformed('is not JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw malformed('is not a JSON object');
  }
  // A null-prototype copy, so that a "__proto__" key is an ordinary member.
  const context: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const [key, value] of Object.entries(parsed)) {
    if (typeof value !== 'string') {
      throw malformed('is not a JSON object of strings');
    }
    context[key] = value;
  }
  let canonical: Uint8Array | undefined;
  try {
    canonical = marshalContext(context);
  } catch {
    throw malformed('is not valid Unicode');
  }
  if (canonical === undefined || !Buffer.from(canonical).equals(bytes)) {
    throw malformed('is not in canonical form');
  }
  return context;
}
