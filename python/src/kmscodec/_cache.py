"""Caches of data keys, so that the codec calls KMS once per data key
rather than once per payload. Each makes concurrent cold requests for the
same key share one KMS call, and none caches a failure as a success."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cachetools import TTLCache

from kmscodec._envelope import DATA_KEY_SIZE, SealingKey, marshal_context
from kmscodec._errors import InvalidKMSResponseError, KMSError
from kmscodec._kms import KMSCaller, KMSClient, RegionalRouter, SingleFlight, is_key_arn

Clock = Callable[[], float]

NEGATIVE_CACHE_SIZE = 1024
NEGATIVE_CACHE_TTL = 10.0
MAX_SCOPES = 1024


@dataclass(frozen=True)
class Scope:
    """What a data key for encryption is generated for: one KMS key, named
    as configured, and one encryption context."""

    key_id: str
    encryption_context: Mapping[str, str]
    context_json: bytes | None = field(init=False)
    id: tuple[str, tuple[tuple[str, str], ...]] = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "context_json", marshal_context(self.encryption_context))
        object.__setattr__(
            self, "id", (self.key_id, tuple(sorted(self.encryption_context.items())))
        )


class _EncryptionKey:
    __slots__ = ("bytes", "expires", "key", "uses")

    def __init__(self, key: SealingKey, expires: float) -> None:
        self.key = key
        self.expires = expires
        self.uses = 0
        self.bytes = 0


class EncryptionKeys:
    """Data keys for sealing, one per scope, replaced by a new
    GenerateDataKey when too old or used for too many payloads or bytes."""

    def __init__(
        self,
        caller: KMSCaller,
        *,
        max_age: float,
        max_payloads: int,
        max_bytes: int,
        clock: Clock,
        on_generated: Callable[[SealingKey], None],
    ) -> None:
        self._caller = caller
        self._max_age = max_age
        self._max_payloads = max_payloads
        self._max_bytes = max_bytes
        self._clock = clock
        self._on_generated = on_generated
        self._keys: TTLCache[tuple[object, ...], _EncryptionKey] = TTLCache(
            MAX_SCOPES, max_age, timer=clock
        )
        self._flight: SingleFlight[tuple[object, ...], _EncryptionKey] = SingleFlight()
        self.generate_calls = 0

    def cached(self, scope: Scope, size: int) -> SealingKey | None:
        """The current data key of scope if it has room for one more payload
        of size bytes, or None when only a KMS call can give one. Does not
        wait, so that a batch sealed under a warm key never yields."""
        if self._max_payloads == 1:
            return None
        try:
            k = self._keys[scope.id]
        except KeyError:
            return None
        return k.key if self._reserve(k, size) else None

    async def get(self, scope: Scope, size: int) -> SealingKey:
        """A data key of scope with room for one more payload of size bytes."""
        key = self.cached(scope, size)
        return key if key is not None else await self.refill(scope, size)

    async def refill(self, scope: Scope, size: int) -> SealingKey:
        """A data key of scope for one more payload of size bytes, once
        cached has found none: from a KMS call, shared with concurrent ones."""
        if self._max_payloads == 1:
            # A data key per payload: nothing to share, nothing to wait for.
            return (await self._generate(scope)).key
        while True:
            k = await self._flight.do(scope.id, lambda: self._refresh(scope))
            # Waiters of one flight share its key; if they use it up, those
            # left over start the next flight.
            if self._reserve(k, size):
                return k.key
            key = self.cached(scope, size)
            if key is not None:
                return key

    async def _refresh(self, scope: Scope) -> _EncryptionKey:
        # Another flight may have replaced the key meanwhile.
        k = self._keys.get(scope.id)
        if k is not None and self._usable(k):
            return k
        k = await self._generate(scope)
        self._keys[scope.id] = k
        return k

    def _usable(self, k: _EncryptionKey) -> bool:
        return (
            self._clock() < k.expires
            and k.uses < self._max_payloads
            and (self._max_bytes == 0 or k.bytes < self._max_bytes)
        )

    def _reserve(self, k: _EncryptionKey, size: int) -> bool:
        if not self._clock() < k.expires or k.uses >= self._max_payloads:
            return False
        if self._max_bytes > 0:
            fits = k.bytes == 0 or k.bytes + size <= self._max_bytes
            # Counted even when it does not fit, so that the key is no longer
            # usable and the next flight generates one. The first payload
            # always fits, so an oversized payload gets a key of its own
            # instead of asking KMS forever.
            k.bytes += size
            if not fits:
                return False
        k.uses += 1
        return True

    async def _generate(self, scope: Scope) -> _EncryptionKey:
        client = self._caller.client
        context = dict(scope.encryption_context)

        def call() -> tuple[str, bytes, bytes]:
            out = client.generate_data_key(
                KeyId=scope.key_id, KeySpec="AES_256", EncryptionContext=context
            )
            key_arn, plaintext, blob = (
                out.get("KeyId"),
                out.get("Plaintext"),
                out.get("CiphertextBlob"),
            )
            if not isinstance(key_arn, str) or not is_key_arn(key_arn):
                raise InvalidKMSResponseError("KeyId is not a key ARN")
            if not isinstance(plaintext, bytes) or len(plaintext) != DATA_KEY_SIZE:
                raise InvalidKMSResponseError(
                    f"plaintext data key is {len(plaintext or b'')} bytes, want {DATA_KEY_SIZE}"
                )
            if not isinstance(blob, bytes) or not blob:
                raise InvalidKMSResponseError("CiphertextBlob is empty")
            return key_arn, plaintext, blob

        self.generate_calls += 1
        key_arn, plaintext, blob = await self._caller.call("GenerateDataKey", scope.key_id, call)
        key = SealingKey(plaintext, key_arn, blob, scope.context_json)
        self._on_generated(key)
        return _EncryptionKey(key, self._clock() + self._max_age)

    def __len__(self) -> int:
        return len(self._keys)


@dataclass(frozen=True)
class WrappedKey:
    """A data key as a payload names it, to be unwrapped by KMS."""

    identity: bytes
    """Equal for two wrapped keys exactly when key ARN, blob and context are."""
    key_arn: str
    blob: bytes
    encryption_context: Mapping[str, str]


class DecryptionKeys:
    """Unwrapped data keys in a bounded LRU with expiry, and KMS refusals
    remembered for a short while."""

    def __init__(
        self,
        caller: KMSCaller,
        *,
        size: int,
        ttl: float,
        clock: Clock,
        router: RegionalRouter | None = None,
    ) -> None:
        self._caller = caller
        self._router = router
        self._keys: TTLCache[bytes, bytes] = TTLCache(size, ttl, timer=clock)
        self._failures: TTLCache[bytes, KMSError] = TTLCache(
            NEGATIVE_CACHE_SIZE, NEGATIVE_CACHE_TTL, timer=clock
        )
        self._flight: SingleFlight[bytes, bytes] = SingleFlight()
        self.decrypt_calls = 0

    def cached(self, identity: bytes) -> bytes | None:
        # One lookup; Cache.get would make two (contains, then get item).
        try:
            return self._keys[identity]
        except KeyError:
            return None

    def add(self, identity: bytes, plaintext: bytes) -> None:
        """Keep a data key the codec already has (one it just generated), so
        reading back its own payloads costs no KMS call."""
        self._keys[identity] = plaintext

    async def get(self, w: WrappedKey) -> bytes:
        """The plaintext data key of w, from the cache or from KMS."""
        k = self._keys.get(w.identity)
        if k is not None:
            return k
        refused = self._failures.get(w.identity)
        if refused is not None:
            raise refused
        return await self._flight.do(w.identity, lambda: self._unwrap_once(w))

    async def _unwrap_once(self, w: WrappedKey) -> bytes:
        # A flight that just ended may have filled the cache or been refused.
        k = self._keys.get(w.identity)
        if k is not None:
            return k
        refused = self._failures.get(w.identity)
        if refused is not None:
            raise refused
        try:
            k = await self._unwrap(w)
        except KMSError as e:
            if not e.transient:
                self._failures[w.identity] = e
            raise
        self._keys[w.identity] = k
        self._failures.pop(w.identity, None)
        return k

    async def _unwrap(self, w: WrappedKey) -> bytes:
        if self._router is None:
            return await self._unwrap_with(self._caller.client, w.key_arn, w)
        err: KMSError | None = None
        for client, key_arn in self._router.route(w.key_arn):
            try:
                return await self._unwrap_with(client, key_arn, w)
            except KMSError as e:
                if not e.transient:
                    raise  # a refusal is final: no other replica is asked
                err = e
        assert err is not None  # a route is never empty
        raise err

    async def _unwrap_with(self, client: KMSClient, key_arn: str, w: WrappedKey) -> bytes:
        """One Decrypt call to client naming key_arn (the payload's key, or
        its replica in the client's region), which the answer must name too."""
        context = dict(w.encryption_context)

        def call() -> bytes:
            out = client.decrypt(
                # Naming the key makes KMS refuse a wrapped key of any
                # other key, rather than trusting the payload's claim.
                KeyId=key_arn,
                CiphertextBlob=w.blob,
                EncryptionContext=context,
            )
            answered, plaintext = out.get("KeyId"), out.get("Plaintext")
            if answered != key_arn:
                asked = "the payload's key" if key_arn == w.key_arn else f"its replica {key_arn}"
                raise InvalidKMSResponseError(f"decrypted with key {answered!r}, not {asked}")
            if not isinstance(plaintext, bytes) or len(plaintext) != DATA_KEY_SIZE:
                raise InvalidKMSResponseError(
                    f"plaintext data key is {len(plaintext or b'')} bytes, want {DATA_KEY_SIZE}"
                )
            return plaintext

        self.decrypt_calls += 1
        return await self._caller.call("Decrypt", key_arn, call)

    def __len__(self) -> int:
        return len(self._keys)


class KeyResolver:
    """The key ARN a configured key ID or alias stands for, asked of KMS
    (DescribeKey) and kept for a limited time, since an alias may move. A
    key ARN resolves to itself without a call."""

    def __init__(self, caller: KMSCaller, key_id: str, *, ttl: float, clock: Clock) -> None:
        self._caller = caller
        self._key_id = key_id
        self._ttl = ttl
        self._clock = clock
        self._current: tuple[str, float] | None = None
        self._flight: SingleFlight[str, str] = SingleFlight()
        self.describe_calls = 0

    async def arn(self) -> str:
        if is_key_arn(self._key_id):
            return self._key_id
        cur = self._current
        if cur is not None and self._clock() < cur[1]:
            return cur[0]
        return await self._flight.do("", self._describe)

    async def _describe(self) -> str:
        client = self._caller.client
        key_id = self._key_id

        def call() -> str:
            out = client.describe_key(KeyId=key_id)
            arn = out.get("KeyMetadata", {}).get("Arn")
            if not isinstance(arn, str) or not is_key_arn(arn):
                raise InvalidKMSResponseError("DescribeKey returned no key ARN")
            return arn

        self.describe_calls += 1
        arn = await self._caller.call("DescribeKey", key_id, call)
        self.observe(arn)
        return arn

    def observe(self, arn: str) -> None:
        """Record arn as what the key ID stands for now, as GenerateDataKey
        reported it, saving a DescribeKey call."""
        self._current = (arn, self._clock() + self._ttl)
