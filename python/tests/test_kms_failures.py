"""Every way a KMS call can fail, with botocore's Stubber in front of a
real boto3 client: the codec fails closed with a KMSError that says
whether retrying may help, and remembers only refusals."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import ANY, Stubber
from temporalio.api.common.v1 import Payload

from kmscodec import InvalidKMSResponseError, KMSCodec, KMSError
from tests.conftest import KEY_ARN, OTHER_KEY_ARN, FakeClock, FakeKMS

DATA_KEY = bytes(range(32))
BLOB = b"wrapped-data-key"


@pytest.fixture
def client() -> Any:
    return boto3.client(
        "kms",
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
    )


@pytest.fixture
def stub(client: Any) -> Iterator[Stubber]:
    with Stubber(client) as s:
        yield s
        s.assert_no_pending_responses()


def payload() -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=b'"secret"')


async def sealed_payload(namespace: str = "ns") -> Payload:
    (p,) = await KMSCodec(FakeKMS(), KEY_ARN, namespace=namespace).encode([payload()])
    return p


def expect_decrypt(stub: Stubber, sealed: Payload, response: dict[str, Any]) -> None:
    stub.add_response(
        "decrypt",
        response,
        {
            "KeyId": KEY_ARN,
            "CiphertextBlob": sealed.metadata["encryption-data-key"],
            "EncryptionContext": {"temporal-namespace": "ns"},
        },
    )


async def test_generate_data_key_is_asked_with_aes_256_and_the_namespace_context(
    client: Any, stub: Stubber
) -> None:
    stub.add_response(
        "generate_data_key",
        {"KeyId": KEY_ARN, "Plaintext": DATA_KEY, "CiphertextBlob": BLOB},
        {
            "KeyId": KEY_ARN,
            "KeySpec": "AES_256",
            "EncryptionContext": {"app": "billing", "temporal-namespace": "ns"},
        },
    )
    codec = KMSCodec(client, KEY_ARN, namespace="ns", encryption_context={"app": "billing"})
    (sealed,) = await codec.encode([payload()])
    assert sealed.metadata["encryption-data-key"] == BLOB


@pytest.mark.parametrize(
    ("code", "status", "transient"),
    [
        ("ThrottlingException", 400, True),
        ("KMSInternalException", 500, True),
        ("AccessDeniedException", 400, False),
        ("DisabledException", 400, False),
        ("NotFoundException", 400, False),
    ],
)
async def test_generate_data_key_failure_fails_encode_closed(
    client: Any, stub: Stubber, code: str, status: int, transient: bool
) -> None:
    stub.add_client_error("generate_data_key", code, http_status_code=status)
    codec = KMSCodec(client, KEY_ARN)
    with pytest.raises(KMSError) as caught:
        await codec.encode([payload()])
    assert caught.value.op == "GenerateDataKey"
    assert caught.value.error_code == code
    assert caught.value.transient is transient
    assert "payload 1 of 1" in str(caught.value)


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ({"KeyId": KEY_ARN, "Plaintext": DATA_KEY[:16], "CiphertextBlob": BLOB}, "16 bytes"),
        ({"KeyId": "alias/temporal", "Plaintext": DATA_KEY, "CiphertextBlob": BLOB}, "key ARN"),
    ],
)
async def test_unusable_generate_data_key_answer_fails_encode(
    client: Any, stub: Stubber, response: dict[str, Any], problem: str
) -> None:
    stub.add_response("generate_data_key", response)
    with pytest.raises(KMSError, match=problem) as caught:
        await KMSCodec(client, KEY_ARN).encode([payload()])
    assert isinstance(caught.value.__cause__, InvalidKMSResponseError)
    assert not caught.value.transient


async def test_throttled_decrypt_is_transient_and_not_remembered(
    client: Any, stub: Stubber
) -> None:
    sealed = await sealed_payload()
    stub.add_client_error("decrypt", "ThrottlingException", http_status_code=400)
    expect_decrypt(stub, sealed, {"KeyId": KEY_ARN, "Plaintext": DATA_KEY})
    codec = KMSCodec(client, KEY_ARN)
    with pytest.raises(KMSError) as caught:
        await codec.decode([sealed])
    assert caught.value.transient
    assert not caught.value.refused_ciphertext
    # Asked again at once (the answer's data key is not this payload's).
    with pytest.raises(Exception, match="commitment"):
        await codec.decode([sealed])


@pytest.mark.parametrize(
    ("code", "refused"),
    [("AccessDeniedException", False), ("InvalidCiphertextException", True)],
)
async def test_decrypt_refusal_is_remembered_for_ten_seconds(
    client: Any, stub: Stubber, code: str, refused: bool
) -> None:
    sealed = await sealed_payload()
    clock = FakeClock()
    codec = KMSCodec(client, KEY_ARN, clock=clock)
    stub.add_client_error("decrypt", code, http_status_code=400)
    with pytest.raises(KMSError) as first:
        await codec.decode([sealed])
    assert not first.value.transient
    assert first.value.refused_ciphertext is refused
    clock.advance(9.9)
    with pytest.raises(KMSError) as again:  # from memory: the Stubber has no answer left
        await codec.decode([sealed])
    assert str(again.value).count("payload 1 of 1") == 1
    assert again.value.error_code == code
    clock.advance(0.1)
    expect_decrypt(stub, sealed, {"KeyId": KEY_ARN, "Plaintext": DATA_KEY})
    with pytest.raises(Exception, match="commitment"):
        await codec.decode([sealed])


@pytest.mark.parametrize(
    ("response", "problem"),
    [
        ({"KeyId": OTHER_KEY_ARN, "Plaintext": DATA_KEY}, "not the payload's key"),
        ({"KeyId": KEY_ARN, "Plaintext": DATA_KEY + b"x"}, "33 bytes"),
    ],
)
async def test_unusable_decrypt_answer_fails_decode(
    client: Any, stub: Stubber, response: dict[str, Any], problem: str
) -> None:
    sealed = await sealed_payload()
    expect_decrypt(stub, sealed, response)
    with pytest.raises(KMSError, match=problem) as caught:
        await KMSCodec(client, KEY_ARN).decode([sealed])
    assert isinstance(caught.value.__cause__, InvalidKMSResponseError)
    assert caught.value.op == "Decrypt"


async def test_kms_call_past_the_timeout_fails_transient_without_blocking_the_loop(
    client: Any, stub: Stubber
) -> None:
    release = threading.Event()

    def hang(**_: Any) -> None:
        release.wait(10)

    # Ahead of the Stubber's handler, which answers the call.
    client.meta.events.register_first("before-parameter-build.kms.GenerateDataKey", hang)
    stub.add_response(
        "generate_data_key", {"KeyId": KEY_ARN, "Plaintext": DATA_KEY, "CiphertextBlob": BLOB}
    )
    codec = KMSCodec(client, KEY_ARN, kms_timeout=timedelta(milliseconds=200))
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    start = time.monotonic()
    with pytest.raises(KMSError, match="no answer within") as caught:
        await codec.encode([payload()])
    elapsed = time.monotonic() - start
    ticker.cancel()
    release.set()
    assert caught.value.transient
    assert 0.2 <= elapsed < 1.0
    assert ticks >= 10  # the event loop ran on while the call hung
    codec.close(wait=True)  # the hung call gets its answer and ends


async def test_transient_failure_does_not_stop_later_encodes(client: Any, stub: Stubber) -> None:
    stub.add_client_error("generate_data_key", "ThrottlingException", http_status_code=400)
    stub.add_response(
        "generate_data_key",
        {"KeyId": KEY_ARN, "Plaintext": DATA_KEY, "CiphertextBlob": BLOB},
        {"KeyId": KEY_ARN, "KeySpec": "AES_256", "EncryptionContext": ANY},
    )
    codec = KMSCodec(client, KEY_ARN)
    with pytest.raises(KMSError):
        await codec.encode([payload()])
    (sealed,) = await codec.encode([payload()])
    assert await codec.decode([sealed]) == [payload()]
