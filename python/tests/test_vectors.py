"""Every vector of envelope/testdata/ against the envelope functions and the
codec: good ones open to their input and seal to their bytes, fail ones
fail with the named error, pass ones come back unchanged."""

from __future__ import annotations

from typing import Any

import pytest
from temporalio.api.common.v1 import Payload

from kmscodec import (
    AuthenticationFailedError,
    KMSCodec,
    KMSCodecError,
    MalformedPayloadError,
    UnsupportedFormatError,
)
from kmscodec._envelope import NotEncryptedError, SealingKey, parse
from tests.conftest import FakeKMS
from tests.vectors import Vector, as_map, load_vectors

VECTORS = load_vectors()
ERRORS: dict[str, type[KMSCodecError]] = {
    "malformed": MalformedPayloadError,
    "authentication": AuthenticationFailedError,
    "unsupported-format": UnsupportedFormatError,
}


def vectors(kind: str) -> list[Any]:
    return [pytest.param(v, id=v.name) for v in VECTORS if v.kind == kind]


def open_with_data_key(p: Payload, data_key: bytes) -> Payload:
    """Decode as a codec does, with the vector standing in for KMS."""
    try:
        env = parse(p)
    except NotEncryptedError:
        return p
    env.encryption_context()
    return env.open(data_key)


class VectorKMS(FakeKMS):
    """KMS as the vectors describe it: Decrypt returns the vector's data
    key for the vector's key ARN."""

    def __init__(self, v: Vector) -> None:
        super().__init__()
        self.v = v

    def decrypt(self, *, KeyId: str, CiphertextBlob: bytes, EncryptionContext: Any) -> Any:
        self.calls["Decrypt"] += 1
        return {"KeyId": KeyId, "Plaintext": self.v.data_key}


def codec_for(v: Vector) -> KMSCodec:
    md = v.sealed.metadata
    arn = md["encryption-key-id"].decode() if "encryption-key-id" in md else ""
    allowed = [arn] if arn.startswith("arn:") and ":key/" in arn else []
    return KMSCodec(VectorKMS(v), None, decrypt_key_ids=allowed, disable_encryption=True)


def test_every_vector_kind_is_known() -> None:
    assert {v.kind for v in VECTORS} <= {"good", "fail", "pass"}
    assert all(v.raw["error"] in ERRORS for v in VECTORS if v.kind == "fail")


@pytest.mark.parametrize("v", vectors("good"))
def test_good_vector_opens_to_its_input(v: Vector) -> None:
    assert as_map(open_with_data_key(v.sealed, v.data_key)) == as_map(v.input)


@pytest.mark.parametrize("v", vectors("good"))
async def test_good_vector_decodes_through_the_codec(v: Vector) -> None:
    (out,) = await codec_for(v).decode([v.sealed])
    assert as_map(out) == as_map(v.input)


@pytest.mark.parametrize("v", vectors("good"))
def test_good_vector_seals_to_its_bytes(v: Vector) -> None:
    key = _vector_key(v)
    sealed = key.seal_plaintext(v.hex("plaintext"), v.hex("salt"))
    assert as_map(sealed) == as_map(v.sealed)
    assert key.identity == v.hex("aad")


@pytest.mark.parametrize("v", vectors("good"))
def test_good_vector_input_round_trips_through_our_serialization(v: Vector) -> None:
    key = _vector_key(v)
    sealed = key.seal(v.input, v.hex("salt"))
    assert as_map(open_with_data_key(sealed, v.data_key)) == as_map(v.input)
    assert Payload.FromString(v.input.SerializeToString(deterministic=True)) == v.input
    # Both write map entries sorted by key, so the bytes agree too.
    assert v.input.SerializeToString(deterministic=True) == v.hex("plaintext")
    assert sealed.data == v.sealed.data


@pytest.mark.parametrize("v", vectors("fail"))
def test_fail_vector_fails_with_its_error(v: Vector) -> None:
    with pytest.raises(ERRORS[v.raw["error"]]):
        open_with_data_key(v.sealed, v.data_key)


@pytest.mark.parametrize("v", vectors("fail"))
async def test_fail_vector_fails_with_its_error_through_the_codec(v: Vector) -> None:
    with pytest.raises(ERRORS[v.raw["error"]]):
        await codec_for(v).decode([v.sealed])


@pytest.mark.parametrize("v", vectors("pass"))
async def test_pass_vector_is_returned_unchanged(v: Vector) -> None:
    assert v.raw["error"] == "not-encrypted"
    assert open_with_data_key(v.sealed, v.data_key) == v.sealed
    codec = codec_for(v)
    (out,) = await codec.decode([v.sealed])
    assert out == v.sealed


def _vector_key(v: Vector) -> SealingKey:
    ctx = v.raw.get("encryption_context") or {}
    from kmscodec._envelope import marshal_context

    return SealingKey(v.data_key, v.raw["key_arn"], v.hex("wrapped_key"), marshal_context(ctx))
