"""Fixtures shared by the tests: a fake KMS that behaves like the real one
where the tests need it to, and a clock the tests move by hand."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping
from typing import Any

import pytest

KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
OLD_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/0000aaaa-12ab-34cd-56ef-1234567890ab"
OTHER_KEY_ARN = "arn:aws:kms:us-east-1:111122223333:key/ffffffff-12ab-34cd-56ef-1234567890ab"
ALIAS = "alias/temporal"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeKMS:
    """An in-process stand-in for the KMS API the codec uses: wrapping is a
    lookup table keyed by the blob, so Decrypt checks key and context as KMS
    does. Counts calls by operation."""

    def __init__(self, alias_target: str = KEY_ARN) -> None:
        self.calls: Counter[str] = Counter()
        self.alias_target = alias_target
        self._wrapped: dict[bytes, tuple[str, dict[str, str], bytes]] = {}

    def _resolve(self, key_id: str) -> str:
        return self.alias_target if key_id.startswith("alias/") else key_id

    def generate_data_key(
        self, *, KeyId: str, KeySpec: str, EncryptionContext: Mapping[str, str]
    ) -> dict[str, Any]:
        self.calls["GenerateDataKey"] += 1
        assert KeySpec == "AES_256"
        arn = self._resolve(KeyId)
        plaintext = os.urandom(32)
        blob = os.urandom(40)
        self._wrapped[blob] = (arn, dict(EncryptionContext), plaintext)
        return {"KeyId": arn, "Plaintext": plaintext, "CiphertextBlob": blob}

    def decrypt(
        self, *, KeyId: str, CiphertextBlob: bytes, EncryptionContext: Mapping[str, str]
    ) -> dict[str, Any]:
        from botocore.exceptions import ClientError

        self.calls["Decrypt"] += 1
        entry = self._wrapped.get(CiphertextBlob)
        if entry is None or entry[0] != KeyId or entry[1] != dict(EncryptionContext):
            raise ClientError(
                {"Error": {"Code": "InvalidCiphertextException", "Message": ""}}, "Decrypt"
            )
        return {"KeyId": entry[0], "Plaintext": entry[2]}

    def describe_key(self, *, KeyId: str) -> dict[str, Any]:
        self.calls["DescribeKey"] += 1
        return {"KeyMetadata": {"Arn": self._resolve(KeyId)}}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fake_kms() -> FakeKMS:
    return FakeKMS()
