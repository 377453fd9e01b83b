"""The codec's behaviour against an in-process KMS: what it writes, how
often it asks KMS, which payloads it refuses and when."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from typing import Any

import pytest
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DefaultFailureConverterWithEncodedAttributes,
    WorkflowSerializationContext,
)

from kmscodec import (
    AuthenticationFailedError,
    KeyNotAllowedError,
    KMSCodec,
    KMSError,
    MalformedPayloadError,
    NamespaceMismatchError,
    UnencryptedPayloadError,
    data_converter,
)
from tests.conftest import ALIAS, KEY_ARN, OLD_KEY_ARN, OTHER_KEY_ARN, FakeClock, FakeKMS


def payload(data: bytes = b'{"card":"4111"}', encoding: bytes = b"json/plain") -> Payload:
    return Payload(metadata={"encoding": encoding}, data=data)


def context_of(p: Payload) -> dict[str, str]:
    ctx: dict[str, str] = json.loads(p.metadata["encryption-context"])
    return ctx


async def test_encoded_payload_is_kms_envelope_v1_and_decodes_to_the_input(
    fake_kms: FakeKMS,
) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, namespace="payments")
    p = payload()
    (sealed,) = await codec.encode([p])
    assert sealed.metadata["encoding"] == b"binary/encrypted"
    assert sealed.metadata["encryption-format"] == b"kms-envelope-v1"
    assert sealed.metadata["encryption-key-id"] == KEY_ARN.encode()
    assert b"4111" not in sealed.SerializeToString()
    assert len(sealed.data) == len(p.SerializeToString()) + 80
    assert await codec.decode([sealed]) == [p]


async def test_encryption_context_is_user_context_plus_configured_namespace(
    fake_kms: FakeKMS,
) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, encryption_context={"app": "billing"}, namespace="payments")
    (sealed,) = await codec.encode([payload()])
    assert sealed.metadata["encryption-context"] == (
        b'{"app":"billing","temporal-namespace":"payments"}'
    )


async def test_no_namespace_and_no_context_leaves_the_context_field_out(fake_kms: FakeKMS) -> None:
    (sealed,) = await KMSCodec(fake_kms, KEY_ARN).encode([payload()])
    assert "encryption-context" not in sealed.metadata


@pytest.mark.parametrize(
    "context",
    [
        WorkflowSerializationContext(namespace="from-sdk", workflow_id="wf"),
        ActivitySerializationContext(
            namespace="from-sdk",
            activity_id="1",
            activity_type="a",
            activity_task_queue="q",
            workflow_id="wf",
            workflow_type="W",
            is_local=False,
        ),
    ],
)
async def test_namespace_comes_from_the_sdk_serialization_context(
    fake_kms: FakeKMS, context: Any
) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, namespace="configured")
    view = codec.with_context(context)
    (sealed,) = await view.encode([payload()])
    assert context_of(sealed)["temporal-namespace"] == "from-sdk"
    (own,) = await codec.encode([payload()])
    assert context_of(own)["temporal-namespace"] == "configured"
    # The views share caches: the configured namespace's data key does not
    # serve the SDK's, and decoding either costs no KMS call.
    assert fake_kms.calls["GenerateDataKey"] == 2
    assert await codec.decode([sealed, own]) == [payload(), payload()]
    assert fake_kms.calls["Decrypt"] == 0


async def test_data_converter_encrypts_failures_too(fake_kms: FakeKMS) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN)
    converter = data_converter(codec)
    assert converter.payload_codec is codec
    assert converter.failure_converter_class is DefaultFailureConverterWithEncodedAttributes
    ns = converter.with_context(WorkflowSerializationContext(namespace="ns1", workflow_id="w"))
    (sealed,) = await ns.encode(["secret"])
    assert context_of(sealed) == {"temporal-namespace": "ns1"}


async def test_one_data_key_serves_many_payloads_and_own_payloads_decode_without_kms(
    fake_kms: FakeKMS,
) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, namespace="ns")
    sealed = [p for _ in range(50) for p in await codec.encode([payload(), payload(b"x")])]
    assert fake_kms.calls["GenerateDataKey"] == 1
    assert len({p.metadata["encryption-data-key"] for p in sealed}) == 1
    assert len({p.data[:32] for p in sealed}) == 100  # a fresh salt per payload
    await codec.decode(sealed)
    assert fake_kms.calls["Decrypt"] == 0


async def test_fresh_codec_decrypts_each_data_key_once(fake_kms: FakeKMS) -> None:
    writer = KMSCodec(fake_kms, KEY_ARN, namespace="ns", max_payloads_per_data_key=2)
    sealed = await writer.encode([payload(bytes([i])) for i in range(6)])
    reader = KMSCodec(fake_kms, KEY_ARN)
    assert await reader.decode(sealed) == [payload(bytes([i])) for i in range(6)]
    await reader.decode(sealed)
    assert fake_kms.calls == {"GenerateDataKey": 3, "Decrypt": 3}


async def test_max_payloads_per_data_key_one_generates_a_key_per_payload(
    fake_kms: FakeKMS,
) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, max_payloads_per_data_key=1)
    await codec.encode([payload() for _ in range(5)])
    assert fake_kms.calls["GenerateDataKey"] == 5


async def test_max_bytes_per_data_key_rotates_by_size_and_an_oversized_payload_gets_its_own_key(
    fake_kms: FakeKMS,
) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, max_bytes_per_data_key=100)
    small = payload(b"a" * 20)  # 46 bytes as protobuf
    await codec.encode([small, small])
    assert fake_kms.calls["GenerateDataKey"] == 1
    await codec.encode([small])
    assert fake_kms.calls["GenerateDataKey"] == 2
    sealed = await codec.encode([payload(b"b" * 500)])
    assert fake_kms.calls["GenerateDataKey"] == 3
    assert await codec.decode(sealed) == [payload(b"b" * 500)]


async def test_data_key_expires_after_max_age(fake_kms: FakeKMS, clock: FakeClock) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN, clock=clock, data_key_max_age=timedelta(minutes=5))
    await codec.encode([payload()])
    clock.advance(299)
    await codec.encode([payload()])
    assert fake_kms.calls["GenerateDataKey"] == 1
    clock.advance(1)
    await codec.encode([payload()])
    assert fake_kms.calls["GenerateDataKey"] == 2


async def test_decrypted_data_key_expires_after_cache_ttl(
    fake_kms: FakeKMS, clock: FakeClock
) -> None:
    sealed = await KMSCodec(fake_kms, KEY_ARN).encode([payload()])
    reader = KMSCodec(fake_kms, KEY_ARN, clock=clock, decrypt_cache_ttl=timedelta(hours=1))
    await reader.decode(sealed)
    clock.advance(3599)
    await reader.decode(sealed)
    assert fake_kms.calls["Decrypt"] == 1
    clock.advance(1)
    await reader.decode(sealed)
    assert fake_kms.calls["Decrypt"] == 2


async def test_decrypt_cache_is_bounded(fake_kms: FakeKMS) -> None:
    writer = KMSCodec(fake_kms, KEY_ARN, max_payloads_per_data_key=1)
    sealed = await writer.encode([payload() for _ in range(3)])
    reader = KMSCodec(fake_kms, KEY_ARN, decrypt_cache_size=2)
    await reader.decode(sealed)
    await reader.decode(sealed[2:])
    assert fake_kms.calls["Decrypt"] == 3
    await reader.decode(sealed[:1])  # evicted as least recently used
    assert fake_kms.calls["Decrypt"] == 4


class SlowKMS(FakeKMS):
    """Holds every call until released, so that concurrent requests pile up."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def generate_data_key(self, **kwargs: Any) -> dict[str, Any]:
        self.release.wait(5)
        return super().generate_data_key(**kwargs)

    def decrypt(self, **kwargs: Any) -> dict[str, Any]:
        self.release.wait(5)
        return super().decrypt(**kwargs)


async def test_concurrent_cold_encodes_share_one_generate_data_key() -> None:
    kms = SlowKMS()
    codec = KMSCodec(kms, KEY_ARN, namespace="ns")
    tasks = [asyncio.create_task(codec.encode([payload()])) for _ in range(64)]
    await asyncio.sleep(0.05)
    kms.release.set()
    results = await asyncio.gather(*tasks)
    assert kms.calls["GenerateDataKey"] == 1
    assert len({r[0].metadata["encryption-data-key"] for r in results}) == 1


async def test_concurrent_cold_decodes_of_one_data_key_share_one_decrypt() -> None:
    kms = SlowKMS()
    kms.release.set()
    sealed = await KMSCodec(kms, KEY_ARN).encode([payload() for _ in range(64)])
    kms.release.clear()
    reader = KMSCodec(kms, KEY_ARN)
    tasks = [asyncio.create_task(reader.decode([p])) for p in sealed]
    await asyncio.sleep(0.05)
    kms.release.set()
    assert await asyncio.gather(*tasks) == [[payload()]] * 64
    assert kms.calls["Decrypt"] == 1


async def test_callers_sharing_a_refused_decrypt_each_get_one_error_naming_their_payload() -> None:
    kms = SlowKMS()
    kms.release.set()
    (sealed,) = await KMSCodec(kms, KEY_ARN, namespace="ns").encode([payload()])
    md = dict(sealed.metadata)
    md["encryption-data-key"] = b"not-a-wrapped-key"
    forged = Payload(metadata=md, data=sealed.data)
    kms.release.clear()
    reader = KMSCodec(kms, KEY_ARN)
    tasks = [asyncio.create_task(reader.decode([payload(), forged])) for _ in range(8)]
    await asyncio.sleep(0.05)
    kms.release.set()
    errors = await asyncio.gather(*tasks, return_exceptions=True)
    assert kms.calls["Decrypt"] == 1
    for e in errors:
        assert isinstance(e, KMSError) and e.refused_ciphertext
        assert str(e).startswith("kmscodec: decode payload 2 of 2: kms Decrypt")
        assert str(e).count("payload 2 of 2") == 1


async def test_concurrent_encodes_beyond_a_keys_payload_limit_take_a_new_key() -> None:
    kms = SlowKMS()
    codec = KMSCodec(kms, KEY_ARN, max_payloads_per_data_key=10)
    tasks = [asyncio.create_task(codec.encode([payload()])) for _ in range(25)]
    await asyncio.sleep(0.05)
    kms.release.set()
    results = await asyncio.gather(*tasks)
    keys = [r[0].metadata["encryption-data-key"] for r in results]
    assert kms.calls["GenerateDataKey"] == 3
    assert sorted(keys.count(k) for k in set(keys)) == [5, 10, 10]


async def test_payload_under_a_key_outside_the_allow_list_fails_with_no_kms_call(
    fake_kms: FakeKMS,
) -> None:
    other = await KMSCodec(fake_kms, OTHER_KEY_ARN).encode([payload()])
    mine = await KMSCodec(fake_kms, KEY_ARN).encode([payload()])
    reader = KMSCodec(fake_kms, KEY_ARN, decrypt_key_ids=[OLD_KEY_ARN])
    fake_kms.calls.clear()
    with pytest.raises(KeyNotAllowedError, match="payload 2 of 2"):
        await reader.decode(mine + other)  # the whole batch is checked first
    assert sum(fake_kms.calls.values()) == 0


async def test_decrypt_key_ids_allow_payloads_of_rotated_keys(fake_kms: FakeKMS) -> None:
    old = await KMSCodec(fake_kms, OLD_KEY_ARN).encode([payload()])
    reader = KMSCodec(fake_kms, KEY_ARN, decrypt_key_ids=[OLD_KEY_ARN])
    assert await reader.decode(old) == [payload()]


async def test_alias_is_resolved_to_its_key_arn_for_the_allow_list(fake_kms: FakeKMS) -> None:
    sealed = await KMSCodec(fake_kms, KEY_ARN).encode([payload()])
    other = await KMSCodec(fake_kms, OTHER_KEY_ARN).encode([payload()])
    reader = KMSCodec(fake_kms, ALIAS)
    assert await reader.decode(sealed) == [payload()]
    assert fake_kms.calls["DescribeKey"] == 1
    with pytest.raises(KeyNotAllowedError):
        await reader.decode(other)
    assert fake_kms.calls["DescribeKey"] == 1


async def test_alias_payloads_record_the_key_arn_and_need_no_describe_key(
    fake_kms: FakeKMS,
) -> None:
    codec = KMSCodec(fake_kms, ALIAS)
    sealed = await codec.encode([payload()])
    assert sealed[0].metadata["encryption-key-id"] == KEY_ARN.encode()
    assert await codec.decode(sealed) == [payload()]
    assert fake_kms.calls["DescribeKey"] == 0


async def test_tampered_payload_fails_authentication(fake_kms: FakeKMS) -> None:
    codec = KMSCodec(fake_kms, KEY_ARN)
    (sealed,) = await codec.encode([payload()])
    data = bytearray(sealed.data)
    data[-1] ^= 1
    tampered = Payload(metadata=sealed.metadata, data=bytes(data))
    with pytest.raises(AuthenticationFailedError):
        await codec.decode([tampered])


async def test_non_canonical_context_is_malformed_before_any_kms_call(fake_kms: FakeKMS) -> None:
    (sealed,) = await KMSCodec(fake_kms, KEY_ARN, namespace="ns").encode([payload()])
    reader = KMSCodec(fake_kms, KEY_ARN)
    fake_kms.calls.clear()
    for ctx in [b'{"temporal-namespace": "ns"}', b'{"temporal-namespace":"n\\u0073"}']:
        md = dict(sealed.metadata)
        md["encryption-context"] = ctx
        with pytest.raises(MalformedPayloadError):
            await reader.decode([Payload(metadata=md, data=sealed.data)])
    assert sum(fake_kms.calls.values()) == 0


async def test_unencrypted_payloads_pass_through_unless_rejected(fake_kms: FakeKMS) -> None:
    plain = payload()
    assert await KMSCodec(fake_kms, KEY_ARN).decode([plain]) == [plain]
    with pytest.raises(UnencryptedPayloadError):
        await KMSCodec(fake_kms, KEY_ARN, reject_unencrypted=True).decode([plain])


async def test_disable_encryption_passes_encode_through_but_still_decrypts(
    fake_kms: FakeKMS,
) -> None:
    sealed = await KMSCodec(fake_kms, KEY_ARN).encode([payload()])
    codec = KMSCodec(fake_kms, KEY_ARN, disable_encryption=True)
    assert await codec.encode([payload()]) == [payload()]
    assert await codec.decode(sealed) == [payload()]


async def test_require_same_namespace_refuses_another_namespaces_payload_with_no_kms_call(
    fake_kms: FakeKMS,
) -> None:
    sealed = await KMSCodec(fake_kms, KEY_ARN, namespace="ns1").encode([payload()])
    reader = KMSCodec(fake_kms, KEY_ARN, namespace="ns2", require_same_namespace=True)
    fake_kms.calls.clear()
    with pytest.raises(NamespaceMismatchError):
        await reader.decode(sealed)
    assert sum(fake_kms.calls.values()) == 0
    assert await reader.with_namespace("ns1").decode(sealed) == [payload()]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"encryption_context": {"temporal-namespace": "x"}}, "must not set"),
        ({"decrypt_key_ids": ["alias/old"]}, "not a key ARN"),
        ({"data_key_max_age": timedelta(0)}, "data_key_max_age"),
        ({"max_payloads_per_data_key": 0}, "max_payloads_per_data_key"),
        ({"max_bytes_per_data_key": -1}, "max_bytes_per_data_key"),
        ({"kms_timeout": timedelta(seconds=-1)}, "kms_timeout"),
        ({"encryption_context": {"k": "v" * 5000}}, "keep it under"),
    ],
)
def test_invalid_options_are_refused_at_construction(
    fake_kms: FakeKMS, kwargs: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        KMSCodec(fake_kms, KEY_ARN, **kwargs)


def test_key_id_is_required_unless_encryption_is_disabled(fake_kms: FakeKMS) -> None:
    with pytest.raises(ValueError, match="key_id is required"):
        KMSCodec(fake_kms, None)
    KMSCodec(fake_kms, None, disable_encryption=True)
