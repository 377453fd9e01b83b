// Benchmark of the codec against raw AES-256-GCM and against a
// samples-style static-key codec (12-byte random nonce ‖ AES-GCM of the
// marshalled payload), in one run, caches warm and KMS faked in process.
// Within a round the operations take turns call by call; each figure is
// the median of the rounds.
//
//   npm run bench                 (make bench-typescript)
//   BENCH_ROUNDS=7 BENCH_MS=500 npm run bench

import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import os from 'node:os';

import type { Payload, PayloadCodec } from '@temporalio/common';
import { temporal } from '@temporalio/proto';

import { KMSCodec } from '../src';
import { FakeKMS, KEY_ARN } from '../test/helpers';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);
const MS_PER_ROUND = Number(process.env.BENCH_MS ?? 400);
const PayloadProto = temporal.api.common.v1.Payload;

/** The layout of Temporal's encryption samples: one static key, a random nonce per payload. */
class StaticKeyCodec implements PayloadCodec {
  constructor(
    private readonly key: Buffer,
    private readonly keyId: string,
  ) {}

  // eslint-disable-next-line @typescript-eslint/require-await -- PayloadCodec is async
  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const nonce = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', this.key, nonce);
      const ciphertext = cipher.update(PayloadProto.encode(p).finish());
      cipher.final();
      return {
        metadata: { encoding: Buffer.from('binary/encrypted'), 'encryption-key-id': Buffer.from(this.keyId) },
        data: Buffer.concat([nonce, ciphertext, cipher.getAuthTag()]),
      };
    });
  }

  // eslint-disable-next-line @typescript-eslint/require-await -- PayloadCodec is async
  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => {
      const data = p.data ?? new Uint8Array();
      const decipher = createDecipheriv('aes-256-gcm', this.key, data.subarray(0, 12));
      decipher.setAuthTag(data.subarray(data.length - 16));
      const plaintext = decipher.update(data.subarray(12, data.length - 16));
      decipher.final();
      return PayloadProto.decode(plaintext);
    });
  }
}

function rawSeal(key: Buffer, data: Uint8Array): Buffer {
  const nonce = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, nonce);
  const ciphertext = cipher.update(data);
  cipher.final();
  return Buffer.concat([nonce, ciphertext, cipher.getAuthTag()]);
}

function rawOpen(key: Buffer, sealed: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  const plaintext = decipher.update(sealed.subarray(12, sealed.length - 16));
  decipher.final();
  return plaintext;
}

type Op = () => unknown;

// measureAlternating calls each op in turn, one call each per iteration,
// for about MS_PER_ROUND, and returns nanoseconds per call of each. Taking
// turns call by call exposes every op to the same load from the rest of
// the machine, so their ratios hold even when the absolute times do not.
async function measureAlternating(ops: Record<string, Op>): Promise<Record<string, number>> {
  const entries = Object.entries(ops);
  const names = entries.map(([name]) => name);
  const total: Record<string, bigint> = Object.fromEntries(names.map((name) => [name, 0n]));
  const deadline = process.hrtime.bigint() + BigInt(MS_PER_ROUND * names.length) * 1_000_000n;
  let n = 0;
  while (process.hrtime.bigint() < deadline) {
    for (const [name, op] of entries) {
      const start = process.hrtime.bigint();
      await op();
      total[name] = (total[name] ?? 0n) + (process.hrtime.bigint() - start);
    }
    n++;
  }
  return Object.fromEntries(names.map((name) => [name, Number(total[name]) / n]));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? NaN;
}

async function main(): Promise<void> {
  const fake = new FakeKMS();
  const codec = new KMSCodec({ kms: fake.client, keyId: KEY_ARN, namespace: 'default' });
  const key = randomBytes(32);
  const samples = new StaticKeyCodec(key, 'static-key');
  const results: string[] = [];

  for (const [label, size] of [
    ['1KiB', 1024],
    ['1MiB', 1024 * 1024],
  ] as const) {
    const data = randomBytes(size);
    const payload: Payload = { metadata: { encoding: Buffer.from('binary/plain') }, data };
    const sealedKMS = await codec.encode([payload]);
    const sealedStatic = await samples.encode([payload]);
    const sealedRaw = rawSeal(key, data);
    const ops: Record<string, Op> = {
      'raw-encode': () => rawSeal(key, data),
      'samples-encode': () => samples.encode([payload]),
      'kmscodec-encode': () => codec.encode([payload]),
      'raw-decode': () => rawOpen(key, sealedRaw),
      'samples-decode': () => samples.decode(sealedStatic),
      'kmscodec-decode': () => codec.decode(sealedKMS),
    };
    const times: Record<string, number[]> = {};
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, ns] of Object.entries(await measureAlternating(ops))) {
        (times[name] ??= []).push(ns);
      }
    }
    const ns = (name: string) => median(times[name] ?? []);
    for (const name of Object.keys(ops)) {
      const t = ns(name);
      const mbps = (size / (t / 1e9)) / (1024 * 1024);
      results.push(`${label.padEnd(5)} ${name.padEnd(16)} ${(t / 1000).toFixed(2).padStart(10)} µs/op ${mbps.toFixed(0).padStart(6)} MiB/s`);
    }
    for (const dir of ['encode', 'decode']) {
      const vsRaw = ns(`raw-${dir}`) / ns(`kmscodec-${dir}`);
      const vsSamples = ns(`kmscodec-${dir}`) / ns(`samples-${dir}`);
      results.push(
        `${label.padEnd(5)} ${dir}: kmscodec throughput ${vsRaw.toFixed(2)}x raw AES-GCM; time ${vsSamples.toFixed(2)}x the samples-style codec`,
      );
    }
  }
  const cpu = os.cpus()[0]?.model ?? 'unknown CPU';
  console.log(
    `node ${process.version}, ${cpu}, ${String(os.cpus().length)} CPUs, load ${os.loadavg()[0]?.toFixed(1) ?? '?'}; ` +
      `${String(ROUNDS)} rounds of ${String(MS_PER_ROUND)} ms per operation, alternating, medians`,
  );
  console.log(results.join('\n'));
}

void main();
