"""KMSCodec: the Temporal PayloadCodec of kmscodec."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import timedelta
from typing import TypeVar, cast

import temporalio.converter
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from typing_extensions import Self

from kmscodec._cache import DecryptionKeys, EncryptionKeys, KeyResolver, Scope, WrappedKey
from kmscodec._envelope import (
    MAX_CONTEXT_SIZE,
    Envelope,
    NotEncryptedError,
    SealingKey,
    marshal_context,
    parse,
)
from kmscodec._errors import (
    KeyNotAllowedError,
    KMSCodecError,
    KMSError,
    NamespaceMismatchError,
    UnencryptedPayloadError,
)
from kmscodec._kms import (
    DEFAULT_KMS_THREADS,
    KeyARN,
    KMSCaller,
    KMSClient,
    RegionalRouter,
    is_key_arn,
    same_key_arn,
)

NAMESPACE_CONTEXT_KEY = "temporal-namespace"
"""The encryption context key that binds each data key to its namespace."""

# How many namespace views a codec remembers; beyond it a view's scope is
# built afresh on every call, which only costs time.
_MAX_SCOPES = 1024

E = TypeVar("E", bound=KMSCodecError)


class _Shared:
    """What every namespace view of one codec has in common."""

    def __init__(
        self,
        caller: KMSCaller,
        key_id: str | None,
        encryption_context: Mapping[str, str],
        allowed: frozenset[str],
        resolver: KeyResolver | None,
        encrypt: EncryptionKeys | None,
        decrypt: DecryptionKeys,
    ) -> None:
        self.caller = caller
        self.key_id = key_id
        self.encryption_context = encryption_context
        self.allowed = allowed
        self.resolver = resolver
        self.encrypt = encrypt
        self.decrypt = decrypt
        self.scopes: dict[str, Scope] = {}
        # The allowed multi-Region keys with their region left out, so that
        # each one's replicas in every region are allowed too.
        self.allowed_replicas = frozenset(
            str(arn.in_region(""))
            for arn in map(KeyARN.parse, allowed)
            if arn is not None and arn.multi_region
        )

    def is_allowed(self, key_arn: str) -> bool:
        """Whether key_arn is an allowed ARN, or a replica of an allowed
        multi-Region key (same partition, account and key ID)."""
        if key_arn in self.allowed:
            return True
        if self.allowed_replicas:
            arn = KeyARN.parse(key_arn)
            return (
                arn is not None
                and arn.multi_region
                and str(arn.in_region("")) in self.allowed_replicas
            )
        return False

    def scope_for(self, namespace: str | None) -> Scope:
        ns = namespace or ""
        scope = self.scopes.get(ns)
        if scope is None:
            ctx = dict(self.encryption_context)
            if ns:
                ctx[NAMESPACE_CONTEXT_KEY] = ns
            scope = Scope(self.key_id or "", ctx)
            if len(self.scopes) < _MAX_SCOPES:
                self.scopes[ns] = scope
        return scope


class KMSCodec(temporalio.converter.PayloadCodec, WithSerializationContext):
    """Encrypts every payload under its own key, derived from a data key that
    AWS KMS generated, in the kms-envelope-v1 format, and decrypts them.

    The namespace bound into each data key's encryption context is the one
    the SDK gives through its serialization context (workflow and activity
    payloads), else ``namespace``. Views made by :meth:`with_context` share
    this codec's caches. A codec serves one event loop at a time, as a
    Temporal client or worker does. Construction makes no KMS call.

    Args:
        kms_client: a boto3 KMS client (see :func:`kmscodec.kms_client` for
            one with timeouts that fit ``kms_timeout``).
        key_id: the KMS key new payloads are encrypted under: key ARN, key
            ID, alias name or alias ARN. Payloads record the key ARN. Required
            unless ``disable_encryption``.
        decrypt_key_ids: further key ARNs whose payloads may be decrypted
            (keys rotated away from). Only ARNs, so that moving an alias
            never widens what is decrypted. A multi-Region key (key ID
            ``mrk-...``) allows its replicas in every region of its
            partition and account; a single-Region key only its exact ARN.
        encryption_context: added to every data key's KMS encryption
            context; must not set ``temporal-namespace``.
        namespace: the namespace when the SDK does not give one.
        data_key_max_age: how long a data key is used for new payloads.
        max_payloads_per_data_key: payloads one data key seals; 1 for a KMS
            data key per payload.
        max_bytes_per_data_key: payload bytes one data key seals; 0 for no bound.
        decrypt_cache_size: unwrapped data keys kept for decryption.
        decrypt_cache_ttl: how long an unwrapped data key is kept.
        kms_timeout: bound on each KMS call, botocore's retries included.
        reject_unencrypted: fail decoding a payload that is not encrypted
            instead of passing it through.
        require_same_namespace: fail decoding a payload whose context names
            another namespace than the one this view decodes for.
        disable_encryption: encode passes payloads through; decode still
            decrypts.
        clock: monotonic seconds; tests set it.
        kms_threads: threads that may wait on KMS at once.
        region: the AWS region of ``kms_client``, the codec's own. Default:
            none, and every data key is unwrapped by ``kms_client`` naming
            the payload's key ARN. When set, a payload under a multi-Region
            key is unwrapped by that key's replica in ``region`` (whose ARN
            the answer must name), and only after a transient failure
            (throttling, a KMS-side fault, a timeout, a broken connection)
            by its replicas in the regions of ``region_preference`` that
            have a client, then in the payload's own region if it has one;
            a refusal is final. A payload under a single-Region key is
            unwrapped by the client of its key's region if
            ``regional_kms`` has one, else by ``kms_client``.
        regional_kms: KMS clients of other regions than ``region``, by
            region name (``"eu-west-1"``). Requires ``region`` and must not
            name it. Default: none.
        region_preference: the order in which the replicas of other
            regions are tried after ``region``'s KMS fails transiently;
            regions without a client in ``regional_kms`` are skipped.
            Requires ``region``. Default: none, and only the payload's own
            region is tried after ``region``.
    """

    def __init__(
        self,
        kms_client: KMSClient,
        key_id: str | None,
        *,
        decrypt_key_ids: Iterable[str] = (),
        encryption_context: Mapping[str, str] | None = None,
        namespace: str | None = None,
        data_key_max_age: timedelta = timedelta(minutes=5),
        max_payloads_per_data_key: int = 10_000,
        max_bytes_per_data_key: int = 0,
        decrypt_cache_size: int = 10_000,
        decrypt_cache_ttl: timedelta = timedelta(hours=1),
        kms_timeout: timedelta = timedelta(seconds=5),
        reject_unencrypted: bool = False,
        require_same_namespace: bool = False,
        disable_encryption: bool = False,
        clock: Callable[[], float] = time.monotonic,
        kms_threads: int = DEFAULT_KMS_THREADS,
        region: str | None = None,
        regional_kms: Mapping[str, KMSClient] | None = None,
        region_preference: Sequence[str] = (),
    ) -> None:
        if kms_client is None:
            raise ValueError("kmscodec: kms_client is required")
        if not key_id and not disable_encryption:
            raise ValueError("kmscodec: key_id is required unless disable_encryption is set")
        user_context = dict(encryption_context or {})
        _validate_context(user_context)
        _require_positive(
            data_key_max_age=data_key_max_age.total_seconds(),
            max_payloads_per_data_key=max_payloads_per_data_key,
            decrypt_cache_size=decrypt_cache_size,
            decrypt_cache_ttl=decrypt_cache_ttl.total_seconds(),
            kms_timeout=kms_timeout.total_seconds(),
            kms_threads=kms_threads,
        )
        if max_bytes_per_data_key < 0:
            raise ValueError("kmscodec: max_bytes_per_data_key must not be negative")
        router = _router(kms_client, region, regional_kms or {}, region_preference)
        allowed = set()
        for arn in decrypt_key_ids:
            if not is_key_arn(arn):
                raise ValueError(f"kmscodec: decrypt_key_ids: {arn!r} is not a key ARN")
            allowed.add(arn)
        if key_id and is_key_arn(key_id):
            allowed.add(key_id)

        caller = KMSCaller(kms_client, kms_timeout.total_seconds(), kms_threads)
        max_age = data_key_max_age.total_seconds()
        resolver = KeyResolver(caller, key_id, ttl=max_age, clock=clock) if key_id else None
        decrypt = DecryptionKeys(
            caller,
            size=decrypt_cache_size,
            ttl=decrypt_cache_ttl.total_seconds(),
            clock=clock,
            router=router,
        )

        def on_generated(key: SealingKey) -> None:
            # A worker reading back its own payloads (an activity's input,
            # a query's result) makes no KMS call.
            decrypt.add(key.identity, key.data_key)
            if resolver is not None:
                resolver.observe(key.key_arn)

        encrypt = None
        if key_id:
            encrypt = EncryptionKeys(
                caller,
                max_age=max_age,
                max_payloads=max_payloads_per_data_key,
                max_bytes=max_bytes_per_data_key,
                clock=clock,
                on_generated=on_generated,
            )
        self._shared = _Shared(
            caller, key_id, user_context, frozenset(allowed), resolver, encrypt, decrypt
        )
        self._reject_unencrypted = reject_unencrypted
        self._require_same_namespace = require_same_namespace
        self._disable_encryption = disable_encryption
        self._count_bytes = max_bytes_per_data_key > 0
        self._namespace = namespace or None
        self._scope = self._shared.scope_for(self._namespace)

    @property
    def namespace(self) -> str | None:
        """The namespace new data keys are bound to by this view."""
        return self._namespace

    @property
    def encryption_context(self) -> Mapping[str, str]:
        """The encryption context new data keys of this view are generated with."""
        return dict(self._scope.encryption_context)

    def with_namespace(self, namespace: str) -> Self:
        """A view of this codec that binds new data keys to namespace,
        sharing this codec's caches."""
        if not namespace or namespace == self._namespace:
            return self
        view = copy.copy(self)
        view._namespace = namespace
        view._scope = self._shared.scope_for(namespace)
        return view

    def with_context(self, context: SerializationContext) -> Self:
        """The SDK calls this with the workflow's or activity's context
        before encoding or decoding its payloads."""
        if isinstance(context, (WorkflowSerializationContext, ActivitySerializationContext)):
            return self.with_namespace(context.namespace)
        return self

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Encrypt each payload into a kms-envelope-v1 payload. Raises rather
        than return any payload unencrypted."""
        if self._disable_encryption:
            return list(payloads)
        encrypt = self._shared.encrypt
        assert encrypt is not None  # a key_id is required unless disabled
        scope, count_bytes = self._scope, self._count_bytes
        out = []
        for i, p in enumerate(payloads):
            size = p.ByteSize() if count_bytes else 0
            # Awaited only when KMS must be asked: a coroutine per payload
            # would cost more than sealing a small one.
            key = encrypt.cached(scope, size)
            if key is None:
                try:
                    key = await encrypt.refill(scope, size)
                except KMSCodecError as e:
                    raise _at(e, "encode", i, len(payloads)) from e.__cause__
            out.append(key.seal(p))
        return out

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        """Decrypt each kms-envelope-v1 payload back into the payload that was
        encoded, and pass others through (unless ``reject_unencrypted``).

        Every payload is parsed and checked (format, allow-list, context)
        before KMS is asked for any data key, so a batch refused for one
        bad payload costs no KMS call.
        """
        n = len(payloads)
        shared = self._shared
        checked: list[tuple[Envelope, bytes | None] | None] = []
        for i, p in enumerate(payloads):
            try:
                env = self._parse(p)
                if env is None:
                    checked.append(None)
                    continue
                # Awaited only to resolve an alias: a coroutine per payload
                # would cost more than opening a small one.
                if not shared.is_allowed(env.key_arn):
                    await self._check_resolved(env.key_arn)
                checked.append((env, self._check_and_find_key(env)))
            except KMSCodecError as e:
                raise _at(e, "decode", i, n) from e.__cause__
        out = []
        for i, (p, entry) in enumerate(zip(payloads, checked, strict=True)):
            if entry is None:
                out.append(p)
                continue
            env, data_key = entry
            try:
                out.append(env.open(data_key or await self._unwrap(env)))
            except KMSCodecError as e:
                raise _at(e, "decode", i, n) from e.__cause__
        return out

    def _parse(self, payload: Payload) -> Envelope | None:
        """The payload's envelope, or None for a payload to pass through."""
        try:
            return parse(payload)
        except NotEncryptedError:
            if self._reject_unencrypted:
                raise UnencryptedPayloadError("payload is not encrypted") from None
            return None

    def _check_and_find_key(self, env: Envelope) -> bytes | None:
        """The remaining checks of an allowed envelope, then its data key if
        cached."""
        if self._require_same_namespace:
            self._check_namespace(env)
        data_key = self._shared.decrypt.cached(env.aad)
        if data_key is None:
            env.encryption_context()  # malformed contexts fail before any KMS call
        return data_key

    async def _check_resolved(self, key_arn: str) -> None:
        """Allow key_arn if the configured key ID (an alias) stands for it."""
        resolver = self._shared.resolver
        if resolver is not None and same_key_arn(await resolver.arn(), key_arn):
            return
        raise KeyNotAllowedError(f"payload's master key is not allowed for decryption: {key_arn}")

    def _check_namespace(self, env: Envelope) -> None:
        got = env.encryption_context().get(NAMESPACE_CONTEXT_KEY)
        want = self._scope.encryption_context.get(NAMESPACE_CONTEXT_KEY)
        if got is not None and want is not None and got != want:
            raise NamespaceMismatchError(f"payload names {got!r}, decoding for {want!r}")

    async def _unwrap(self, env: Envelope) -> bytes:
        return await self._shared.decrypt.get(
            WrappedKey(
                identity=env.aad,
                key_arn=env.key_arn,
                blob=env.wrapped_key,
                encryption_context=env.encryption_context(),
            )
        )

    @property
    def kms_calls(self) -> Mapping[str, int]:
        """KMS calls this codec (all its views) made, by operation."""
        s = self._shared
        return {
            "GenerateDataKey": s.encrypt.generate_calls if s.encrypt else 0,
            "Decrypt": s.decrypt.decrypt_calls,
            "DescribeKey": s.resolver.describe_calls if s.resolver else 0,
        }

    def close(self, wait: bool = False) -> None:
        """Release the KMS thread pool once the calls under way have ended
        (waiting for them if wait). A later call starts a new pool."""
        self._shared.caller.close(wait)


def _at(e: E, op: str, i: int, n: int) -> E:
    """A copy of e whose message says which payload it is about. A copy,
    because one error may reach several callers: those sharing a KMS call,
    and those answered from the memory of a refusal."""
    where = f"kmscodec: {op} payload {i + 1} of {n}: {e}"
    copy: KMSCodecError
    if isinstance(e, KMSError):
        copy = KMSError(e.op, e.key_id, e.__cause__ or e)
    else:
        copy = type(e)()
        copy.__cause__ = e.__cause__
    copy.args = (where,)
    return cast(E, copy)


def _router(
    home_client: KMSClient,
    region: str | None,
    regional_kms: Mapping[str, KMSClient],
    preference: Sequence[str],
) -> RegionalRouter | None:
    """The router of Decrypt calls over the regional clients, after checking
    them; None without a region."""
    if not region:
        if regional_kms or preference:
            raise ValueError(
                "kmscodec: regional_kms and region_preference need region, the region of kms_client"
            )
        return None
    if isinstance(preference, str):
        raise ValueError("kmscodec: region_preference is a sequence of region names, not one")
    for name, client in regional_kms.items():
        if not name:
            raise ValueError("kmscodec: regional_kms has an empty region name")
        if name == region:
            raise ValueError(
                f"kmscodec: regional_kms must not name region {region!r}: kms_client is its client"
            )
        if client is None:
            raise ValueError(f"kmscodec: regional_kms[{name!r}] is None")
    return RegionalRouter(region, {**regional_kms, region: home_client}, preference)


def _validate_context(ctx: dict[str, str]) -> None:
    if NAMESPACE_CONTEXT_KEY in ctx:
        raise ValueError(
            f"kmscodec: encryption_context must not set {NAMESPACE_CONTEXT_KEY!r}: use namespace"
        )
    try:
        encoded = marshal_context(ctx) or b""
    except KMSCodecError as e:
        raise ValueError(f"kmscodec: encryption_context: {e}") from e
    if len(encoded) > MAX_CONTEXT_SIZE // 2:
        raise ValueError(
            f"kmscodec: encryption_context is {len(encoded)} bytes as JSON; "
            f"keep it under {MAX_CONTEXT_SIZE // 2}"
        )


def _require_positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ValueError(f"kmscodec: {name} must be positive")


def data_converter(codec: KMSCodec) -> temporalio.converter.DataConverter:
    """A DataConverter that encrypts every payload with codec, failures'
    messages and stack traces too (encoded failure attributes), for
    ``Client.connect(..., data_converter=data_converter(codec))``."""
    return temporalio.converter.DataConverter(
        payload_codec=codec,
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )
