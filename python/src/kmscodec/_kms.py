"""Calling the synchronous boto3 KMS client from asyncio: in a bounded
thread pool, each call bounded in time, with one call shared by
concurrent requests for the same thing."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, Generic, Literal, Protocol, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from kmscodec._errors import InvalidKMSResponseError, KMSError


class KMSClient(Protocol):
    """The part of a boto3 KMS client the codec uses."""

    def generate_data_key(
        self,
        *,
        KeyId: str,  # noqa: N803 - boto3's argument names
        KeySpec: Literal["AES_256"],  # noqa: N803
        EncryptionContext: Mapping[str, str],  # noqa: N803
    ) -> Mapping[str, Any]: ...

    def decrypt(
        self,
        *,
        KeyId: str,  # noqa: N803
        CiphertextBlob: bytes,  # noqa: N803
        EncryptionContext: Mapping[str, str],  # noqa: N803
    ) -> Mapping[str, Any]: ...

    def describe_key(self, *, KeyId: str) -> Mapping[str, Any]: ...  # noqa: N803


T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

_KEY_ARN = re.compile(r"arn:([^:]+):kms:([^:]*):([^:]*):key/(.+)", re.DOTALL)

# Threads that may wait on KMS at once for one codec. Single-flight keeps
# the number of distinct calls small; this bounds the rest.
DEFAULT_KMS_THREADS = 8


def is_key_arn(key_id: str) -> bool:
    """Whether key_id is the ARN of a KMS key (arn:PARTITION:kms:REGION:
    ACCOUNT:key/KEY-ID), as opposed to a key ID, alias name or alias ARN."""
    return _KEY_ARN.fullmatch(key_id) is not None


# The key ID of every multi-Region key starts with it, and of no
# single-Region key.
_MULTI_REGION_PREFIX = "mrk-"


@dataclass(frozen=True)
class KeyARN:
    """A KMS key ARN taken apart: arn:PARTITION:kms:REGION:ACCOUNT:key/KEY_ID."""

    partition: str
    region: str
    account: str
    key_id: str

    @classmethod
    def parse(cls, key_id: str) -> KeyARN | None:
        """The parts of key_id, or None when it is not a key ARN."""
        m = _KEY_ARN.fullmatch(key_id)
        if m is None:
            return None
        partition, region, account, rest = m.group(1, 2, 3, 4)
        return cls(partition, region, account, rest)

    def __str__(self) -> str:
        return f"arn:{self.partition}:kms:{self.region}:{self.account}:key/{self.key_id}"

    @property
    def multi_region(self) -> bool:
        """Whether this is a multi-Region key: one of a set of replicas in
        several regions that share key material, so that what one replica
        wraps any other unwraps."""
        return self.key_id.startswith(_MULTI_REGION_PREFIX)

    def in_region(self, region: str) -> KeyARN:
        """The ARN of this key's replica in region (meaningful for a
        multi-Region key only)."""
        return replace(self, region=region)

    def same_key(self, other: KeyARN) -> bool:
        """Whether both name the same key material: equal, or both
        multi-Region and differing at most by region. Two single-Region keys
        with one key ID in two regions are two unrelated keys."""
        if self == other:
            return True
        return (
            self.multi_region and other.multi_region and self.in_region("") == other.in_region("")
        )


def same_key_arn(a: str, b: str) -> bool:
    """KeyARN.same_key on two strings; anything that is not a key ARN
    matches only an identical string."""
    if a == b:
        return True
    x, y = KeyARN.parse(a), KeyARN.parse(b)
    return x is not None and y is not None and x.same_key(y)


class RegionalRouter:
    """Which KMS client unwraps the data keys of a key ARN, and naming which
    ARN, over the clients of several regions, home being the codec's own:

    - a multi-Region key is unwrapped by its replica in home, then, after a
      transient failure, by its replicas in the regions of preference, then
      in its own region, skipping regions without a client. A replica
      shares its key material, so home's replica keeps reads going while
      the writer's region is out of reach;
    - a single-Region key is unwrapped in its own region, by that region's
      client if there is one, else by home's (which KMS answers only if the
      key is in fact home's);
    - anything that is not a key ARN goes to home's client as it is.
    """

    def __init__(
        self, home: str, clients: Mapping[str, KMSClient], preference: Sequence[str]
    ) -> None:
        self._home = home
        self._clients = dict(clients)
        self._preference = tuple(preference)

    def route(self, key_arn: str) -> list[tuple[KMSClient, str]]:
        """The (client, key ARN to name) pairs to try, best first; never empty."""
        arn = KeyARN.parse(key_arn)
        home = self._clients[self._home]
        if arn is None:
            return [(home, key_arn)]
        if not arn.multi_region:
            return [(self._clients.get(arn.region, home), key_arn)]
        targets: list[tuple[KMSClient, str]] = []
        tried: set[str] = set()
        for region in (self._home, *self._preference, arn.region):
            client = self._clients.get(region)
            if client is not None and region not in tried:
                tried.add(region)
                targets.append((client, str(arn.in_region(region))))
        return targets


def kms_client(
    *,
    region_name: str | None = None,
    endpoint_url: str | None = None,
    kms_timeout: timedelta = timedelta(seconds=5),
    max_attempts: int = 3,
    session: boto3.session.Session | None = None,
) -> KMSClient:
    """A boto3 KMS client whose connect and read timeouts fit within
    kms_timeout, with botocore's standard retry mode. The codec bounds every
    call by kms_timeout in any case; these settings make the thread that
    runs a timed-out call give up soon after."""
    seconds = kms_timeout.total_seconds()
    config = Config(
        connect_timeout=seconds,
        read_timeout=seconds,
        retries={"mode": "standard", "total_max_attempts": max_attempts},
    )
    session = session or boto3.session.Session()
    client: KMSClient = session.client(
        "kms", region_name=region_name, endpoint_url=endpoint_url, config=config
    )
    return client


class KMSCaller:
    """Runs KMS client calls in a dedicated bounded thread pool, never on the
    event loop, each bounded by a timeout that includes botocore's retries."""

    def __init__(
        self, client: KMSClient, timeout: float, threads: int = DEFAULT_KMS_THREADS
    ) -> None:
        self.client = client
        self._timeout = timeout
        self._threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def call(self, op: str, key_id: str, fn: Callable[[], T]) -> T:
        """Run fn (one KMS call) and wrap anything it raises in KMSError."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(self._threads, thread_name_prefix="kmscodec-kms")
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(loop.run_in_executor(self._executor, fn), self._timeout)
        except asyncio.TimeoutError as e:  # TimeoutError itself from Python 3.11
            raise KMSError(op, key_id, TimeoutError(f"no answer within {self._timeout:g}s")) from e
        except (ClientError, BotoCoreError, InvalidKMSResponseError) as e:
            raise KMSError(op, key_id, e) from e

    def close(self, wait: bool = False) -> None:
        """Stop the thread pool once the calls under way have ended, waiting
        for them if wait."""
        if self._executor is not None:
            self._executor.shutdown(wait=wait)
            self._executor = None


class SingleFlight(Generic[K, T]):
    """Concurrent requests for one key share one call: the first starts it
    as a task, the others await the same task. A caller that is cancelled
    leaves the call running for the others."""

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Task[T]] = {}

    async def do(self, key: K, fn: Callable[[], Awaitable[T]]) -> T:
        task = self._calls.get(key)
        if task is None:

            async def run() -> T:
                return await fn()

            task = asyncio.ensure_future(run())
            self._calls[key] = task
            task.add_done_callback(lambda t: self._finished(key, t))
        return await asyncio.shield(task)

    def _finished(self, key: K, task: asyncio.Task[T]) -> None:
        if self._calls.get(key) is task:
            del self._calls[key]
        if not task.cancelled():
            task.exception()  # retrieved: every waiter may have been cancelled

    def __len__(self) -> int:
        return len(self._calls)
