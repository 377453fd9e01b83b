"""The canonical encryption-context JSON: what encoders write and the only
form decoders accept."""

from __future__ import annotations

import pytest

from kmscodec import MalformedPayloadError
from kmscodec._envelope import marshal_context, parse_context


def test_keys_are_sorted_by_utf8_bytes_without_white_space() -> None:
    ctx = {"b": "1", "a": "2", "\u00e9": "3", "Z": "4", "\U0001f600": "5", "\uffff": "6"}
    assert marshal_context(ctx) == (
        '{"Z":"4","a":"2","b":"1","\u00e9":"3","\uffff":"6","\U0001f600":"5"}'.encode()
    )


@pytest.mark.parametrize(
    ("value", "escaped"),
    [
        ('"', '\\"'),
        ("\\", "\\\\"),
        ("\b\t\n\f\r", "\\b\\t\\n\\f\\r"),
        ("\x00\x01\x1f", "\\u0000\\u0001\\u001f"),
        ("\x1b", "\\u001b"),
        ("/<>&\x7f\u2028\u2029", "/<>&\x7f\u2028\u2029"),
        ("z\u00fc\U0001f600", "z\u00fc\U0001f600"),
    ],
)
def test_only_the_required_characters_are_escaped(value: str, escaped: str) -> None:
    assert marshal_context({"k": value}) == ('{"k":"' + escaped + '"}').encode()
    assert parse_context(marshal_context({"k": value})) == {"k": value}


def test_empty_context_is_left_out() -> None:
    assert marshal_context({}) is None
    assert parse_context(None) == {}


def test_lone_surrogate_is_not_valid_utf8() -> None:
    with pytest.raises(MalformedPayloadError):
        marshal_context({"k": "\ud800"})


@pytest.mark.parametrize(
    "text",
    [
        b'{"a":"1", "b":"2"}',
        b' {"a":"1"}',
        b'{"b":"2","a":"1"}',
        b'{"a":"1","a":"1"}',
        b'{"a":"\\/"}',
        b'{"a":"\\u001B"}',
        b'{"a":"\\u00e9"}',
        b'{"a":"\\ud800"}',
        b'{"a":1}',
        b'["a"]',
        b"{}",
        b'{"a":"\xff"}',
        b"not json",
    ],
)
def test_anything_but_the_canonical_form_is_malformed(text: bytes) -> None:
    with pytest.raises(MalformedPayloadError):
        parse_context(text)
