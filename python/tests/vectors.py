"""The test vectors of docs/FORMAT.md, read from envelope/testdata/ of the
repository at run time, so that new vectors are picked up without a change
here."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from temporalio.api.common.v1 import Payload

TESTDATA = Path(__file__).resolve().parents[2] / "envelope" / "testdata"


@dataclass(frozen=True)
class Vector:
    name: str
    raw: dict[str, Any]

    @property
    def kind(self) -> str:
        return self.name.split("_", 1)[0]

    @property
    def data_key(self) -> bytes:
        return bytes.fromhex(self.raw["data_key"])

    @property
    def sealed(self) -> Payload:
        return payload_from_json(self.raw["sealed"])

    @property
    def input(self) -> Payload:
        return payload_from_json(self.raw["input"])

    def hex(self, name: str) -> bytes:
        """A hex field; empty ones (an empty plaintext) are left out."""
        return bytes.fromhex(self.raw.get(name, ""))


def payload_from_json(obj: dict[str, Any]) -> Payload:
    return json_format.ParseDict(obj, Payload())


def load_vectors() -> list[Vector]:
    vectors = [
        Vector(path.stem, json.loads(path.read_text(encoding="utf-8")))
        for path in sorted(TESTDATA.glob("*.json"))
    ]
    if not vectors:
        raise RuntimeError(f"no test vectors in {TESTDATA}")
    return vectors


def as_map(p: Payload) -> tuple[dict[str, bytes], bytes]:
    """A payload as metadata map and data, to compare payloads whose
    protobuf encodings may order map entries differently."""
    return dict(p.metadata), p.data
