"""The multi-Region rule (docs/FORMAT.md, "Multi-Region keys"): the
allow-list matches the replicas of an allowed multi-Region key and nothing
else, and a codec given its own region unwraps with the replica there,
falling back to other regions only after a transient failure."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from temporalio.api.common.v1 import Payload

from kmscodec import InvalidKMSResponseError, KeyNotAllowedError, KMSCodec, KMSError
from kmscodec._kms import KeyARN, same_key_arn

ACCOUNT = "111122223333"
MRK_ID = "mrk-1234abcd12ab34cd56ef1234567890ab"


def mrk(region: str, account: str = ACCOUNT, partition: str = "aws") -> str:
    return f"arn:{partition}:kms:{region}:{account}:key/{MRK_ID}"


def single(region: str) -> str:
    return f"arn:aws:kms:{region}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


class Replicas:
    """The KMS of several regions holding replicas of multi-Region keys:
    what one replica wraps, the others unwrap. Records every call as
    (region, operation, KeyId), in order."""

    def __init__(self) -> None:
        self.wrapped: dict[bytes, tuple[str, dict[str, str], bytes]] = {}
        self.log: list[tuple[str, str, str]] = []

    def region(self, name: str) -> RegionKMS:
        return RegionKMS(self, name)

    def decrypts(self) -> list[tuple[str, str]]:
        return [(region, key_id) for region, op, key_id in self.log if op == "Decrypt"]


class RegionKMS:
    """One region's KMS of Replicas. failures are raised by the next calls,
    one each; answer_key_id replaces the KeyId Decrypt answers with."""

    def __init__(self, replicas: Replicas, name: str) -> None:
        self.replicas = replicas
        self.name = name
        self.failures: list[Exception] = []
        self.answer_key_id: str | None = None

    def generate_data_key(
        self, *, KeyId: str, KeySpec: str, EncryptionContext: Mapping[str, str]
    ) -> dict[str, Any]:
        self.replicas.log.append((self.name, "GenerateDataKey", KeyId))
        plaintext, blob = os.urandom(32), os.urandom(40)
        self.replicas.wrapped[blob] = (KeyId, dict(EncryptionContext), plaintext)
        return {"KeyId": KeyId, "Plaintext": plaintext, "CiphertextBlob": blob}

    def decrypt(
        self, *, KeyId: str, CiphertextBlob: bytes, EncryptionContext: Mapping[str, str]
    ) -> dict[str, Any]:
        self.replicas.log.append((self.name, "Decrypt", KeyId))
        if self.failures:
            raise self.failures.pop(0)
        entry = self.replicas.wrapped.get(CiphertextBlob)
        arn = KeyARN.parse(KeyId)
        if (
            entry is None
            or arn is None
            or arn.region != self.name
            or not same_key_arn(entry[0], KeyId)
            or entry[1] != dict(EncryptionContext)
        ):
            raise refusal("InvalidCiphertextException")
        return {"KeyId": self.answer_key_id or KeyId, "Plaintext": entry[2]}

    def describe_key(self, *, KeyId: str) -> dict[str, Any]:
        """Every alias names this region's replica of the multi-Region key."""
        self.replicas.log.append((self.name, "DescribeKey", KeyId))
        assert KeyId.startswith("alias/")
        return {"KeyMetadata": {"Arn": mrk(self.name)}}


def kms_error(code: str, status: int) -> ClientError:
    response: Any = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}
    return ClientError(response, "Decrypt")


def refusal(code: str) -> ClientError:
    return kms_error(code, 400)


def throttled() -> ClientError:
    return kms_error("ThrottlingException", 400)


def kms_internal() -> ClientError:
    return kms_error("KMSInternalException", 500)


def payload() -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=b'"secret"')


async def written_in(kms: RegionKMS, key_arn: str) -> Payload:
    (sealed,) = await KMSCodec(kms, key_arn, namespace="ns").encode([payload()])
    kms.replicas.log.clear()
    return sealed


def reader(
    own: RegionKMS,
    key_id: str,
    others: Mapping[str, RegionKMS] | None = None,
    **options: Any,
) -> KMSCodec:
    return KMSCodec(
        own, key_id, namespace="ns", region=own.name, regional_kms=others or {}, **options
    )


async def test_a_multi_region_payload_is_unwrapped_by_the_own_replica_not_the_writers() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, mrk("us-east-1"))
    codec = reader(west, mrk("us-west-2"), {"us-east-1": east})

    assert await codec.decode([sealed]) == [payload()]
    assert await codec.decode([sealed]) == [payload()]  # cached by the payload's AAD

    assert replicas.decrypts() == [("us-west-2", mrk("us-west-2"))]


async def test_a_multi_region_payload_is_read_without_any_client_for_the_writers_region() -> None:
    replicas = Replicas()
    sealed = await written_in(replicas.region("us-east-1"), mrk("us-east-1"))
    codec = reader(replicas.region("us-west-2"), mrk("us-west-2"))

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.decrypts() == [("us-west-2", mrk("us-west-2"))]


async def test_an_answer_naming_another_key_than_the_replica_asked_for_is_refused() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, mrk("us-east-1"))
    west.answer_key_id = mrk("us-east-1")  # the payload's ARN, not the replica asked for
    codec = reader(west, mrk("us-west-2"), {"us-east-1": east})

    with pytest.raises(KMSError) as e:
        await codec.decode([sealed])

    assert isinstance(e.value.__cause__, InvalidKMSResponseError)
    assert not e.value.transient
    assert replicas.decrypts() == [("us-west-2", mrk("us-west-2"))]


async def test_a_transient_failure_falls_back_to_preferred_regions_in_order_then_the_writers() -> (
    None
):
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    eu, ap = replicas.region("eu-west-1"), replicas.region("ap-south-1")
    sealed = await written_in(east, mrk("us-east-1"))
    west.failures.append(throttled())
    ap.failures.append(kms_internal())
    eu.failures.append(EndpointConnectionError(endpoint_url="https://kms.eu-west-1"))
    codec = reader(
        west,
        mrk("us-west-2"),
        {"us-east-1": east, "eu-west-1": eu, "ap-south-1": ap},
        # sa-east-1 has no client and is skipped; us-west-2 is not tried twice.
        region_preference=["ap-south-1", "sa-east-1", "us-west-2", "eu-west-1"],
    )

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.decrypts() == [
        ("us-west-2", mrk("us-west-2")),
        ("ap-south-1", mrk("ap-south-1")),
        ("eu-west-1", mrk("eu-west-1")),
        ("us-east-1", mrk("us-east-1")),
    ]


async def test_a_transient_failure_stops_at_the_first_region_that_answers() -> None:
    replicas = Replicas()
    east, west, eu = (replicas.region(r) for r in ("us-east-1", "us-west-2", "eu-west-1"))
    sealed = await written_in(east, mrk("us-east-1"))
    west.failures.append(throttled())
    codec = reader(
        west,
        mrk("us-west-2"),
        {"us-east-1": east, "eu-west-1": eu},
        region_preference=["eu-west-1"],
    )

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.decrypts() == [("us-west-2", mrk("us-west-2")), ("eu-west-1", mrk("eu-west-1"))]


@pytest.mark.parametrize(
    "code", ["AccessDeniedException", "InvalidCiphertextException", "DisabledException"]
)
async def test_a_refusal_by_the_own_replica_is_not_retried_in_other_regions(code: str) -> None:
    replicas = Replicas()
    east, west, eu = (replicas.region(r) for r in ("us-east-1", "us-west-2", "eu-west-1"))
    sealed = await written_in(east, mrk("us-east-1"))
    west.failures.append(refusal(code))
    codec = reader(
        west,
        mrk("us-west-2"),
        {"us-east-1": east, "eu-west-1": eu},
        region_preference=["eu-west-1"],
    )

    with pytest.raises(KMSError) as e:
        await codec.decode([sealed])

    assert e.value.error_code == code
    assert replicas.decrypts() == [("us-west-2", mrk("us-west-2"))]


async def test_a_single_region_payload_is_unwrapped_by_its_own_regions_client() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, single("us-east-1"))
    codec = reader(
        west, mrk("us-west-2"), {"us-east-1": east}, decrypt_key_ids=[single("us-east-1")]
    )

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.decrypts() == [("us-east-1", single("us-east-1"))]


async def test_a_single_region_payload_is_not_retried_elsewhere_when_its_region_fails() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, single("us-east-1"))
    east.failures.append(throttled())
    codec = reader(
        west, mrk("us-west-2"), {"us-east-1": east}, decrypt_key_ids=[single("us-east-1")]
    )

    with pytest.raises(KMSError) as e:
        await codec.decode([sealed])

    assert e.value.transient
    assert replicas.decrypts() == [("us-east-1", single("us-east-1"))]


async def test_without_a_region_the_one_client_is_asked_with_the_payloads_arn() -> None:
    replicas = Replicas()
    east = replicas.region("us-east-1")
    sealed = await written_in(east, mrk("us-east-1"))
    codec = KMSCodec(east, mrk("us-west-2"), namespace="ns")

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.decrypts() == [("us-east-1", mrk("us-east-1"))]


async def test_a_single_region_key_of_another_region_is_refused_by_the_allow_list_without_kms() -> (
    None
):
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    # The same key ID as the allowed key, in another region: an unrelated key.
    sealed = await written_in(west, single("us-west-2"))
    codec = reader(east, single("us-east-1"), {"us-west-2": west})

    with pytest.raises(KeyNotAllowedError):
        await codec.decode([sealed])
    assert replicas.log == []


@pytest.mark.parametrize(
    "writer_arn",
    [
        pytest.param(mrk("us-east-1", account="444455556666"), id="another-account"),
        pytest.param(mrk("cn-north-1", partition="aws-cn"), id="another-partition"),
    ],
)
async def test_a_multi_region_key_of_another_account_or_partition_is_refused_without_kms(
    writer_arn: str,
) -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, writer_arn)
    codec = reader(west, mrk("us-west-2"), {"us-east-1": east})

    with pytest.raises(KeyNotAllowedError):
        await codec.decode([sealed])
    assert replicas.log == []


async def test_a_refused_payload_in_a_batch_stops_the_batch_before_any_kms_call() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    good = await written_in(east, mrk("us-east-1"))
    foreign = await written_in(east, mrk("us-east-1", account="444455556666"))
    codec = reader(west, mrk("us-west-2"), {"us-east-1": east})

    with pytest.raises(KeyNotAllowedError):
        await codec.decode([good, foreign])
    assert replicas.log == []


async def test_an_allowed_multi_region_key_in_decrypt_key_ids_allows_its_replicas() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, f"arn:aws:kms:us-east-1:{ACCOUNT}:key/mrk-old")
    codec = reader(
        west, single("us-west-2"), decrypt_key_ids=[f"arn:aws:kms:eu-west-1:{ACCOUNT}:key/mrk-old"]
    )

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.decrypts() == [("us-west-2", f"arn:aws:kms:us-west-2:{ACCOUNT}:key/mrk-old")]


async def test_an_alias_naming_the_own_replica_allows_the_other_regions_replicas() -> None:
    replicas = Replicas()
    east, west = replicas.region("us-east-1"), replicas.region("us-west-2")
    sealed = await written_in(east, mrk("us-east-1"))
    codec = reader(west, "alias/temporal", {"us-east-1": east})

    assert await codec.decode([sealed]) == [payload()]
    assert replicas.log == [
        ("us-west-2", "DescribeKey", "alias/temporal"),
        ("us-west-2", "Decrypt", mrk("us-west-2")),
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"regional_kms": {"us-east-1": object()}}, "need region"),
        ({"region_preference": ["us-east-1"]}, "need region"),
        ({"region": "us-west-2", "regional_kms": {"us-west-2": object()}}, "must not name"),
        ({"region": "us-west-2", "regional_kms": {"": object()}}, "empty region name"),
        ({"region": "us-west-2", "regional_kms": {"us-east-1": None}}, "is None"),
        ({"region": "us-west-2", "region_preference": "us-east-1"}, "not one"),
    ],
)
def test_regional_options_are_checked_at_construction(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        KMSCodec(Replicas().region("us-west-2"), mrk("us-west-2"), **options)


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        (mrk("us-east-1"), mrk("us-east-1"), True),
        (mrk("us-east-1"), mrk("eu-west-1"), True),
        (mrk("us-east-1"), mrk("us-east-1", account="444455556666"), False),
        (mrk("us-east-1"), mrk("us-east-1", partition="aws-cn"), False),
        (mrk("us-east-1"), mrk("us-east-1").replace(MRK_ID, "mrk-other"), False),
        (single("us-east-1"), single("us-east-1"), True),
        (single("us-east-1"), single("us-west-2"), False),
        ("alias/temporal", "alias/temporal", True),
        ("alias/mrk-x", "alias/mrk-y", False),
        (MRK_ID, mrk("us-east-1"), False),
        (f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/{MRK_ID}", mrk("us-east-1"), False),
    ],
)
def test_key_arns_match_when_equal_or_replicas_of_one_multi_region_key(
    a: str, b: str, same: bool
) -> None:
    assert same_key_arn(a, b) is same
    assert same_key_arn(b, a) is same


def test_a_key_arn_is_taken_apart_and_put_back_together() -> None:
    arn = KeyARN.parse(mrk("eu-west-1"))
    assert arn == KeyARN("aws", "eu-west-1", ACCOUNT, MRK_ID)
    assert arn is not None and arn.multi_region
    assert str(arn.in_region("us-east-1")) == mrk("us-east-1")
    assert KeyARN.parse("alias/temporal") is None
    assert KeyARN.parse(f"arn:aws:kms:us-east-1:{ACCOUNT}:alias/temporal") is None
