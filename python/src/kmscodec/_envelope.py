"""The kms-envelope-v1 wire format (docs/FORMAT.md): pure functions that
take a plaintext data key and never talk to KMS."""

from __future__ import annotations

import functools
import hmac
import json
import os
import struct
from collections.abc import Mapping
from types import MappingProxyType
from typing import NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from google.protobuf.message import DecodeError
from temporalio.api.common.v1 import Payload

from kmscodec._errors import (
    AuthenticationFailedError,
    MalformedPayloadError,
    UnsupportedFormatError,
)

FORMAT = "kms-envelope-v1"
ENCODING_ENCRYPTED = b"binary/encrypted"

METADATA_ENCODING = "encoding"
METADATA_FORMAT = "encryption-format"
METADATA_KEY_ID = "encryption-key-id"
METADATA_DATA_KEY = "encryption-data-key"
METADATA_CONTEXT = "encryption-context"

DATA_KEY_SIZE = 32
SALT_SIZE = 32
COMMITMENT_SIZE = 32
TAG_SIZE = 16
OVERHEAD = SALT_SIZE + COMMITMENT_SIZE + TAG_SIZE

MAX_KEY_ARN_SIZE = 2 << 10
MAX_WRAPPED_KEY_SIZE = 4 << 10
MAX_CONTEXT_SIZE = 8 << 10

IN_PLACE_MIN_SIZE = 64 << 10
"""Plaintexts from this size on are sealed in place, saving a copy of the
data; below it the fixed cost of doing so outweighs the copy."""

HEADER_CACHE_SIZE = 256
"""Distinct payload headers (key ARN, wrapped key, context) whose checks and
AAD are remembered, and distinct contexts whose parse is: a few per data key
in use suffice. Each memory holds at most about 7 MiB with every field at
its size limit, a few hundred KiB in practice."""

_FORMAT_BYTES = FORMAT.encode()
_INFO_PAYLOAD_KEY = (FORMAT + " derive").encode()
_INFO_COMMITMENT = (FORMAT + " commit").encode()
_ZERO_NONCE = bytes(12)
_SHA256 = hashes.SHA256()


class NotEncryptedError(Exception):
    """The payload is not in this format: pass it through."""


def marshal_context(context: Mapping[str, str]) -> bytes | None:
    """The canonical encryption-context JSON of context (keys sorted by
    their UTF-8 bytes, no white space, only the escapes JSON requires), or
    None for an empty context, which is left out of the metadata."""
    if not context:
        return None
    for k, v in context.items():
        if not isinstance(k, str) or not isinstance(v, str):
            raise MalformedPayloadError("encryption context keys and values must be strings")
    try:
        # Code point order is UTF-8 byte order; with ensure_ascii off, json
        # escapes exactly '"', '\\' and the C0 controls, in lower-case hex.
        text = json.dumps(dict(context), ensure_ascii=False, separators=(",", ":"), sort_keys=True)
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedPayloadError("encryption context is not valid UTF-8") from e


def parse_context(context_json: bytes | None) -> dict[str, str]:
    """Parse an encryption-context field, which must be the canonical JSON
    of an object of strings: anything else (white space, other key order,
    duplicate keys, other escapes) is malformed."""
    if context_json is None:
        return {}
    try:
        parsed = json.loads(context_json.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise MalformedPayloadError(f"{METADATA_CONTEXT} is not a JSON object of strings") from e
    if not isinstance(parsed, dict) or not all(isinstance(v, str) for v in parsed.values()):
        raise MalformedPayloadError(f"{METADATA_CONTEXT} is not a JSON object of strings")
    if not parsed or marshal_context(parsed) != context_json:
        raise MalformedPayloadError(f"{METADATA_CONTEXT} is not in canonical form")
    return parsed


_EMPTY_CONTEXT: Mapping[str, str] = MappingProxyType({})


@functools.lru_cache(maxsize=HEADER_CACHE_SIZE)
def _parsed_context(context_json: bytes) -> Mapping[str, str]:
    """parse_context, remembered: the payloads of one data key share their
    context, and checking a namespace reads it for each. Read-only, as one
    mapping serves every caller; malformed contexts are not remembered."""
    return MappingProxyType(parse_context(context_json))


def additional_data(key_arn: bytes, wrapped_key: bytes, context_json: bytes | None) -> bytes:
    """The AAD: the format name, then each header field length-prefixed."""
    ctx = context_json or b""
    return b"".join(
        (
            _FORMAT_BYTES,
            struct.pack(">I", len(key_arn)),
            key_arn,
            struct.pack(">I", len(wrapped_key)),
            wrapped_key,
            struct.pack(">I", len(ctx)),
            ctx,
        )
    )


def derive(data_key: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """The payload key and the key commitment of one payload."""
    prk = HKDF.extract(_SHA256, salt, data_key)
    payload_key = HKDFExpand(_SHA256, 32, _INFO_PAYLOAD_KEY).derive(prk)
    commitment = HKDFExpand(_SHA256, 32, _INFO_COMMITMENT).derive(prk)
    return payload_key, commitment


def _check_fields(key_arn: bytes, wrapped_key: bytes, context_json: bytes | None) -> None:
    if not key_arn:
        raise MalformedPayloadError(f"{METADATA_KEY_ID} is missing or empty")
    if len(key_arn) > MAX_KEY_ARN_SIZE:
        raise MalformedPayloadError(
            f"{METADATA_KEY_ID} is {len(key_arn)} bytes, over the {MAX_KEY_ARN_SIZE}-byte limit"
        )
    if not wrapped_key:
        raise MalformedPayloadError(f"{METADATA_DATA_KEY} is missing or empty")
    if len(wrapped_key) > MAX_WRAPPED_KEY_SIZE:
        raise MalformedPayloadError(
            f"{METADATA_DATA_KEY} is {len(wrapped_key)} bytes, "
            f"over the {MAX_WRAPPED_KEY_SIZE}-byte limit"
        )
    if context_json is not None:
        if not context_json:
            raise MalformedPayloadError(f"{METADATA_CONTEXT} is present but empty")
        if len(context_json) > MAX_CONTEXT_SIZE:
            raise MalformedPayloadError(
                f"{METADATA_CONTEXT} is {len(context_json)} bytes, "
                f"over the {MAX_CONTEXT_SIZE}-byte limit"
            )


class Envelope(NamedTuple):
    """A parsed kms-envelope-v1 payload, not yet decrypted. (A named tuple:
    it is built for every payload decoded, and builds fastest.)"""

    key_arn: str
    wrapped_key: bytes
    context_json: bytes | None
    data: bytes
    aad: bytes
    """Also the identity of the data key (the decryption cache's key)."""

    def encryption_context(self) -> Mapping[str, str]:
        """The context KMS must be given to unwrap the data key (read-only)."""
        if self.context_json is None:
            return _EMPTY_CONTEXT
        return _parsed_context(self.context_json)

    def open(self, data_key: bytes) -> Payload:
        """Check the key commitment, decrypt and return the original payload."""
        payload_key, commitment = derive(data_key, self.data[:SALT_SIZE])
        if not hmac.compare_digest(commitment, self.data[SALT_SIZE : SALT_SIZE + COMMITMENT_SIZE]):
            raise AuthenticationFailedError("key commitment does not match")
        try:
            plaintext = AESGCM(payload_key).decrypt(
                _ZERO_NONCE, memoryview(self.data)[SALT_SIZE + COMMITMENT_SIZE :], self.aad
            )
        except InvalidTag as e:
            raise AuthenticationFailedError("AES-GCM tag does not verify") from e
        try:
            return Payload.FromString(plaintext)
        except DecodeError as e:
            # Authentic but not a payload: the sealer was broken, not the transport.
            raise MalformedPayloadError("decrypted data is not a payload") from e


def parse(payload: Payload) -> Envelope:
    """Read the envelope of payload without decrypting anything.

    Raises NotEncryptedError for a payload this format did not produce,
    UnsupportedFormatError for another encryption-format and
    MalformedPayloadError for fields missing or out of bounds. The
    encryption context is not parsed here.
    """
    md = payload.metadata
    fmt = md.get(METADATA_FORMAT)
    if fmt is None or md.get(METADATA_ENCODING) != ENCODING_ENCRYPTED:
        raise NotEncryptedError
    if fmt != _FORMAT_BYTES:
        raise UnsupportedFormatError(f"unsupported encryption format {fmt[:64]!r}")
    wrapped_key = md.get(METADATA_DATA_KEY, b"")
    context_json = md.get(METADATA_CONTEXT)
    key_arn, aad = _header(md.get(METADATA_KEY_ID, b""), wrapped_key, context_json)
    data = payload.data
    if len(data) < OVERHEAD:
        raise MalformedPayloadError(
            f"data is {len(data)} bytes, shorter than the {OVERHEAD}-byte minimum"
        )
    return Envelope(key_arn, wrapped_key, context_json, data, aad)


@functools.lru_cache(maxsize=HEADER_CACHE_SIZE)
def _header(key_arn: bytes, wrapped_key: bytes, context_json: bytes | None) -> tuple[str, bytes]:
    """The key ARN as text and the AAD of a payload's header fields, once
    they are checked. Remembered, since the payloads of one data key share
    them: a hit costs a hash of the fields rather than checks and a new AAD
    (and returns the same AAD object, whose hash Python keeps, for the data
    key cache's lookup). Fields that fail their checks are not remembered."""
    _check_fields(key_arn, wrapped_key, context_json)
    try:
        key_arn_text = key_arn.decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedPayloadError(f"{METADATA_KEY_ID} is not valid UTF-8") from e
    return key_arn_text, additional_data(key_arn, wrapped_key, context_json)


class SealingKey:
    """One data key, ready to seal payloads: what every payload under it
    shares is computed once."""

    __slots__ = ("_data_key", "_template", "identity", "key_arn")

    def __init__(
        self, data_key: bytes, key_arn: str, wrapped_key: bytes, context_json: bytes | None
    ) -> None:
        if len(data_key) != DATA_KEY_SIZE:
            raise ValueError(f"data key is {len(data_key)} bytes, want {DATA_KEY_SIZE}")
        arn = key_arn.encode("utf-8")
        _check_fields(arn, wrapped_key, context_json)
        self._data_key = bytes(data_key)
        self.key_arn = key_arn
        self.identity = additional_data(arn, wrapped_key, context_json)
        """The AAD of every payload this key seals, and their data key's identity."""
        metadata = {
            METADATA_ENCODING: ENCODING_ENCRYPTED,
            METADATA_FORMAT: _FORMAT_BYTES,
            METADATA_KEY_ID: arn,
            METADATA_DATA_KEY: bytes(wrapped_key),
        }
        if context_json:
            metadata[METADATA_CONTEXT] = context_json
        # Copying a prepared message is several times faster than filling
        # a new one's metadata map from a dict, or than parsing it.
        self._template = Payload(metadata=metadata)

    @property
    def data_key(self) -> bytes:
        return self._data_key

    def seal(self, payload: Payload, salt: bytes | None = None) -> Payload:
        """Encrypt payload, metadata and all, into a kms-envelope-v1 payload."""
        return self.seal_plaintext(payload.SerializeToString(deterministic=True), salt)

    def seal_plaintext(self, plaintext: bytes, salt: bytes | None = None) -> Payload:
        """Seal the protobuf encoding of a payload. salt is drawn at random
        unless given (test vectors give it)."""
        if salt is None:
            salt = os.urandom(SALT_SIZE)
        elif len(salt) != SALT_SIZE:
            raise ValueError(f"salt is {len(salt)} bytes, want {SALT_SIZE}")
        payload_key, commitment = derive(self._data_key, salt)
        out = Payload()
        out.CopyFrom(self._template)
        aead = AESGCM(payload_key)
        if len(plaintext) < IN_PLACE_MIN_SIZE:
            out.data = b"".join(
                (salt, commitment, aead.encrypt(_ZERO_NONCE, plaintext, self.identity))
            )
            return out
        # The data field's encoding is written into one buffer, AES-GCM
        # writing the ciphertext in place (encrypt_into, cryptography 47),
        # and merged into the output: that copies the data once, where
        # joining salt, commitment and ciphertext, then setting Payload.data
        # (which takes only bytes) copies it twice.
        head = b"".join((_DATA_FIELD_TAG, _varint(OVERHEAD + len(plaintext)), salt, commitment))
        data_field = bytearray(len(head) + len(plaintext) + TAG_SIZE)
        data_field[: len(head)] = head
        aead.encrypt_into(
            _ZERO_NONCE, plaintext, self.identity, memoryview(data_field)[len(head) :]
        )
        # Large payloads: one buffer of their size fewer alive at once.
        del plaintext
        # Protobuf parses any buffer; its stubs name only bytes.
        out.MergeFromString(data_field)  # type: ignore[arg-type]
        return out


_DATA_FIELD_TAG = b"\x12"
"""Payload.data: field 2, length-delimited."""


def _varint(n: int) -> bytes:
    """n in protobuf's base-128 varint encoding."""
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)
