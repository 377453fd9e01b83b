"""Encode and decode cost of KMSCodec at 1 KiB and 1 MiB, in the same
run as raw AES-256-GCM on the payload's bytes and a samples-style static-key
codec (12-byte random nonce and AES-GCM of the marshalled payload), with
warm caches and an in-process KMS. Prints a table and the two ratios that
docs/PERFORMANCE.md tracks.

    python benchmarks/bench_codec.py [--seconds 2] [--rounds 9]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kmscodec import KMSCodec
from tests.conftest import KEY_ARN, FakeKMS

SIZES = {"1KiB": 1 << 10, "1MiB": 1 << 20}


class StaticKeyCodec(PayloadCodec):
    """The encryption codec of Temporal's samples: one static key, a random
    nonce per payload."""

    def __init__(self, key: bytes, key_id: bytes = b"test-key-id") -> None:
        self._aead = AESGCM(key)
        self._key_id = key_id

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            sealed = self._aead.encrypt(nonce, p.SerializeToString(), None)
            out.append(
                Payload(
                    metadata={"encoding": b"binary/encrypted", "encryption-key-id": self._key_id},
                    data=nonce + sealed,
                )
            )
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        out = []
        for p in payloads:
            data = p.data
            out.append(Payload.FromString(self._aead.decrypt(data[:12], data[12:], None)))
        return out


async def calibrate(fn: Callable[[], Awaitable[None]], seconds: float) -> int:
    """How many calls of fn take about seconds of CPU time."""
    await fn()  # warm caches
    n = 1
    while True:
        start = time.thread_time()
        for _ in range(n):
            await fn()
        if time.thread_time() - start >= seconds:
            return n
        n *= 2


Timing = tuple[float, float]
"""CPU seconds and wall-clock seconds per call."""


async def measure(
    cases: dict[tuple[str, str], Callable[[], Awaitable[None]]], seconds: float, rounds: int
) -> dict[tuple[str, str], Timing]:
    """CPU and wall seconds per call of each case: the medians of rounds in
    which every case runs once in turn. CPU time of this thread is the
    figure to compare, since it does not count time spent waiting for a
    shared core; wall time of the same calls is reported beside it. The
    rounds make drifts in the machine's speed touch every case alike."""
    counts = {key: await calibrate(fn, seconds / rounds) for key, fn in cases.items()}
    cpu: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    wall: dict[tuple[str, str], list[float]] = {key: [] for key in cases}
    for _ in range(rounds):
        for key, fn in cases.items():
            n = counts[key]
            start_wall, start = time.perf_counter(), time.thread_time()
            for _ in range(n):
                await fn()
            cpu[key].append((time.thread_time() - start) / n)
            wall[key].append((time.perf_counter() - start_wall) / n)
    return {key: (statistics.median(cpu[key]), statistics.median(wall[key])) for key in cases}


async def run(seconds: float, rounds: int) -> dict[tuple[str, str, str], Timing]:
    key = AESGCM.generate_key(256)
    raw = AESGCM(key)
    nonce = os.urandom(12)
    samples = StaticKeyCodec(key)
    codec = KMSCodec(FakeKMS(), KEY_ARN, namespace="bench")
    results: dict[tuple[str, str, str], Timing] = {}
    for size_name, size in SIZES.items():
        p = Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(size))
        raw_sealed = raw.encrypt(nonce, p.data, None)
        samples_sealed = await samples.encode([p])
        codec_sealed = await codec.encode([p])
        assert await codec.decode(codec_sealed) == [p]

        async def raw_encode(data: bytes = p.data) -> None:
            raw.encrypt(nonce, data, None)

        async def raw_decode(sealed: bytes = raw_sealed) -> None:
            raw.decrypt(nonce, sealed, None)

        async def samples_encode(p: Payload = p) -> None:
            await samples.encode([p])

        async def samples_decode(s: list[Payload] = samples_sealed) -> None:
            await samples.decode(s)

        async def kms_encode(p: Payload = p) -> None:
            await codec.encode([p])

        async def kms_decode(s: list[Payload] = codec_sealed) -> None:
            await codec.decode(s)

        cases: dict[tuple[str, str], Callable[[], Awaitable[None]]] = {
            ("raw AES-GCM", "encode"): raw_encode,
            ("raw AES-GCM", "decode"): raw_decode,
            ("samples codec", "encode"): samples_encode,
            ("samples codec", "decode"): samples_decode,
            ("kmscodec", "encode"): kms_encode,
            ("kmscodec", "decode"): kms_decode,
        }
        for (name, op), t in (await measure(cases, seconds, rounds)).items():
            results[(size_name, name, op)] = t
    return results


def report(results: dict[tuple[str, str, str], Timing]) -> None:
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")
    print(f"{'size':6} {'codec':14} {'op':7} {'CPU/op':>12} {'wall/op':>12} {'CPU MB/s':>10}")
    for (size_name, name, op), (cpu, wall) in results.items():
        mbps = SIZES[size_name] / cpu / 1e6
        print(
            f"{size_name:6} {name:14} {op:7} {cpu * 1e6:10.1f}us {wall * 1e6:10.1f}us {mbps:10.1f}"
        )
    for clock, i in (("CPU", 0), ("wall", 1)):
        for op in ("encode", "decode"):
            big = results[("1MiB", "raw AES-GCM", op)][i] / results[("1MiB", "kmscodec", op)][i]
            small = results[("1KiB", "kmscodec", op)][i] / results[("1KiB", "samples codec", op)][i]
            print(
                f"{clock} {op}: 1MiB throughput {big:.2f}x raw AES-GCM (target >= 0.8); "
                f"1KiB time {small:.2f}x samples codec (target <= 1.5)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per case")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds")
    args = parser.parse_args()
    report(asyncio.run(run(args.seconds, args.rounds)))


if __name__ == "__main__":
    main()
