"""Under warm caches a batch is encoded and decoded without waiting on
anything (no KMS call, no hop to the KMS threads): the coroutine finishes
at its first step, never suspending."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, TypeVar

from temporalio.api.common.v1 import Payload

from kmscodec import KMSCodec
from tests.conftest import FakeKMS

T = TypeVar("T")


def run_without_yielding(coro: Coroutine[Any, Any, T]) -> T:
    """The coroutine's result if it completes without suspending; fails the
    test if it awaits anything that suspends."""
    try:
        coro.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coro.close()
    raise AssertionError("the coroutine suspended")


def batch(n: int) -> list[Payload]:
    return [Payload(metadata={"encoding": b"json/plain"}, data=b'{"i":%d}' % i) for i in range(n)]


async def test_warm_batches_encode_and_decode_without_yielding(fake_kms: FakeKMS) -> None:
    codec = KMSCodec(fake_kms, "arn:aws:kms:us-east-1:111122223333:key/k", namespace="default")
    payloads = batch(50)
    await codec.encode(payloads[:1])  # the one KMS call
    encoded = run_without_yielding(codec.encode(payloads))
    assert run_without_yielding(codec.decode(encoded)) == payloads
    assert fake_kms.calls == {"GenerateDataKey": 1}


async def test_a_cold_data_key_is_awaited_then_the_batch_completes(fake_kms: FakeKMS) -> None:
    codec = KMSCodec(fake_kms, "arn:aws:kms:us-east-1:111122223333:key/k", namespace="default")
    payloads = batch(5)
    encoded = await codec.encode(payloads)
    fresh = KMSCodec(fake_kms, "arn:aws:kms:us-east-1:111122223333:key/k", namespace="default")
    assert await fresh.decode(encoded) == payloads
    assert fake_kms.calls == {"GenerateDataKey": 1, "Decrypt": 1}
    assert run_without_yielding(fresh.decode(encoded)) == payloads
