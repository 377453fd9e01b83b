"""The per-payload key derivation: HKDF-SHA256 computed as three one-shot
HMACs must equal HKDF as cryptography implements it, which stays the
reference."""

from __future__ import annotations

import hmac
import os
import random

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from kmscodec._envelope import INFO_COMMITMENT, INFO_PAYLOAD_KEY, derive


def reference_hkdf(ikm: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    return HKDF(hashes.SHA256(), length, salt, info).derive(ikm)


def test_derive_equals_cryptography_hkdf_for_random_keys_and_salts() -> None:
    for _ in range(1000):
        data_key, salt = os.urandom(32), os.urandom(32)
        assert derive(data_key, salt) == (
            reference_hkdf(data_key, salt, INFO_PAYLOAD_KEY),
            reference_hkdf(data_key, salt, INFO_COMMITMENT),
        )


def test_derive_equals_cryptography_hkdf_for_keys_and_salts_of_any_length() -> None:
    # HMAC hashes keys longer than a block (64 bytes) and pads shorter ones;
    # the format's are 32 bytes, but the equivalence does not depend on it.
    rng = random.Random(5869)
    for _ in range(300):
        data_key = rng.randbytes(rng.randrange(1, 200))
        salt = rng.randbytes(rng.randrange(1, 200))
        assert derive(data_key, salt) == (
            reference_hkdf(data_key, salt, INFO_PAYLOAD_KEY),
            reference_hkdf(data_key, salt, INFO_COMMITMENT),
        )


def test_one_block_of_hkdf_is_hmac_of_hmac_as_in_rfc_5869_test_case_1() -> None:
    # RFC 5869, appendix A.1: the construction derive uses, PRK = HMAC(salt,
    # IKM) and the first 32 bytes of OKM = HMAC(PRK, info || 0x01).
    ikm = bytes.fromhex("0b" * 22)
    salt = bytes.fromhex("000102030405060708090a0b0c")
    info = bytes.fromhex("f0f1f2f3f4f5f6f7f8f9")
    prk = bytes.fromhex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5")
    okm = bytes.fromhex(
        "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    )
    assert hmac.digest(salt, ikm, "sha256") == prk
    assert hmac.digest(prk, info + b"\x01", "sha256") == okm[:32]
    assert reference_hkdf(ikm, salt, info, 42) == okm


def test_derive_gives_distinct_payload_key_and_commitment() -> None:
    payload_key, commitment = derive(os.urandom(32), os.urandom(32))
    assert len(payload_key) == len(commitment) == 32
    assert payload_key != commitment
