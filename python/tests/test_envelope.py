"""Parsing an envelope remembers the checked header of each data key; the
memory must never change what parsing accepts or returns. Sealing writes
the output's encoding itself; it must be the payload the format defines."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

from kmscodec import MalformedPayloadError
from kmscodec._envelope import (
    IN_PLACE_MIN_SIZE,
    OVERHEAD,
    SealingKey,
    additional_data,
    derive,
    parse,
)
from tests.conftest import KEY_ARN

CONTEXT = b'{"temporal-namespace":"default"}'


def sealed(wrapped_key: bytes = b"wrapped", context: bytes | None = CONTEXT) -> Payload:
    key = SealingKey(os.urandom(32), KEY_ARN, wrapped_key, context)
    return key.seal(Payload(metadata={"encoding": b"json/plain"}, data=b"{}"))


def test_payloads_of_one_data_key_parse_to_its_header_fields_and_aad() -> None:
    a, b = sealed(), sealed()
    for p in (a, b, a):
        env = parse(p)
        assert env.key_arn == KEY_ARN
        assert env.wrapped_key == b"wrapped"
        assert env.context_json == CONTEXT
        assert env.data == p.data
        assert env.aad == additional_data(KEY_ARN.encode(), b"wrapped", CONTEXT)


def test_headers_differing_in_one_field_get_their_own_aad() -> None:
    base = parse(sealed())
    assert parse(sealed(wrapped_key=b"wrapped2")).aad != base.aad
    assert parse(sealed(context=b'{"temporal-namespace":"other"}')).aad != base.aad
    no_context = parse(sealed(context=None))
    assert no_context.context_json is None
    assert no_context.aad != base.aad


def test_a_malformed_header_fails_every_time_it_is_parsed() -> None:
    p = sealed()
    p.metadata["encryption-key-id"] = b"\xff" + KEY_ARN.encode()
    for _ in range(3):
        with pytest.raises(MalformedPayloadError, match="not valid UTF-8"):
            parse(p)
    p.metadata["encryption-key-id"] = b"k" * 4096
    for _ in range(3):
        with pytest.raises(MalformedPayloadError, match="over the"):
            parse(p)


def test_a_parsed_context_is_read_only_and_a_malformed_one_fails_every_time() -> None:
    env = parse(sealed())
    assert env.encryption_context() == {"temporal-namespace": "default"}
    with pytest.raises(TypeError):
        env.encryption_context()["temporal-namespace"] = "other"  # type: ignore[index]
    assert parse(sealed()).encryption_context() == {"temporal-namespace": "default"}
    assert parse(sealed(context=None)).encryption_context() == {}
    p = sealed(context=b'{ "temporal-namespace":"default"}')
    for _ in range(3):
        with pytest.raises(MalformedPayloadError, match="canonical"):
            parse(p).encryption_context()


@pytest.mark.parametrize(
    "data_size",
    # Around each length where the data field's length prefix grows a byte,
    # and where sealing in place begins.
    [
        0,
        127 - OVERHEAD,
        128 - OVERHEAD,
        16383 - OVERHEAD,
        16384 - OVERHEAD,
        IN_PLACE_MIN_SIZE - 1,
        IN_PLACE_MIN_SIZE,
        (1 << 21) - OVERHEAD - 1,
        (1 << 21) - OVERHEAD,
        (1 << 21) + 5,
    ],
)
def test_sealed_data_is_salt_commitment_and_aes_gcm_ciphertext_at_every_length_prefix(
    data_size: int,
) -> None:
    data_key, salt = os.urandom(32), os.urandom(32)
    key = SealingKey(data_key, KEY_ARN, b"wrapped", CONTEXT)
    plaintext = os.urandom(max(data_size, 0))
    out = key.seal_plaintext(plaintext, salt)
    payload_key, commitment = derive(data_key, salt)
    ciphertext = AESGCM(payload_key).encrypt(bytes(12), plaintext, key.identity)
    assert out.data == salt + commitment + ciphertext
    assert len(out.data) == OVERHEAD + len(plaintext)
    assert dict(out.metadata) == {
        "encoding": b"binary/encrypted",
        "encryption-format": b"kms-envelope-v1",
        "encryption-key-id": KEY_ARN.encode(),
        "encryption-data-key": b"wrapped",
        "encryption-context": CONTEXT,
    }
    assert out.ListFields() == Payload(metadata=out.metadata, data=out.data).ListFields()
