"""Parsing an envelope remembers the checked header of each data key; the
memory must never change what parsing accepts or returns."""

from __future__ import annotations

import os

import pytest
from temporalio.api.common.v1 import Payload

from kmscodec import MalformedPayloadError
from kmscodec._envelope import SealingKey, additional_data, parse
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
