"""Errors of kmscodec, mirroring the Go codec's sentinel errors."""

from __future__ import annotations

from botocore.exceptions import ClientError

__all__ = [
    "AuthenticationFailedError",
    "InvalidKMSResponseError",
    "KMSCodecError",
    "KMSError",
    "KeyNotAllowedError",
    "MalformedPayloadError",
    "NamespaceMismatchError",
    "UnencryptedPayloadError",
    "UnsupportedFormatError",
]


class KMSCodecError(Exception):
    """Base class of every error the codec raises."""


class MalformedPayloadError(KMSCodecError):
    """A payload marked kms-envelope-v1 has a missing, empty or oversized
    field, data too short to hold an envelope, or an encryption context
    that is not the canonical JSON object of strings. No KMS call is made
    for it."""


class AuthenticationFailedError(KMSCodecError):
    """The key commitment or the AES-GCM tag did not verify: the payload
    was altered after it was sealed, or sealed under another data key."""


class UnsupportedFormatError(KMSCodecError):
    """The payload is ``binary/encrypted`` in an ``encryption-format`` this
    codec does not implement. It is never passed through."""


class KeyNotAllowedError(KMSCodecError):
    """The payload names a master key that is neither the key the codec
    encrypts with nor one of ``decrypt_key_ids``. No KMS call is made."""


class NamespaceMismatchError(KMSCodecError):
    """``require_same_namespace`` is set and the payload's encryption
    context names another namespace. No KMS call is made."""


class UnencryptedPayloadError(KMSCodecError):
    """``reject_unencrypted`` is set and a payload is not encrypted."""


class InvalidKMSResponseError(KMSCodecError):
    """KMS answered with something unusable: a plaintext data key that is
    not 32 bytes, or a key ARN other than the one asked for."""


# KMS error codes that a later retry of the same call may get past.
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "LimitExceededException",
        "KMSInternalException",
        "DependencyTimeoutException",
    }
)

# Decrypt refusing the wrapped key itself.
_REFUSED_CIPHERTEXT_CODES = frozenset({"InvalidCiphertextException", "IncorrectKeyException"})


class KMSError(KMSCodecError):
    """A failed KMS call. ``__cause__`` is what botocore raised (a
    ``ClientError``, a timeout or a connection error) or an
    :class:`InvalidKMSResponseError`."""

    def __init__(self, op: str, key_id: str, cause: BaseException) -> None:
        super().__init__(f"kms {op} (key {key_id}): {_describe(cause)}")
        self.op = op
        self.key_id = key_id
        self.__cause__ = cause

    @property
    def error_code(self) -> str | None:
        """The AWS error code (``ThrottlingException`` ...), if KMS answered."""
        cause = self.__cause__
        if isinstance(cause, ClientError):
            code = cause.response.get("Error", {}).get("Code")
            return code if isinstance(code, str) else None
        return None

    @property
    def transient(self) -> bool:
        """Whether retrying the same call later may succeed: throttling,
        KMS-side faults, timeouts and network errors. KMS rejecting the
        request itself (access denied, invalid ciphertext, disabled key)
        is not transient, nor is an unusable answer."""
        cause = self.__cause__
        if isinstance(cause, InvalidKMSResponseError):
            return False
        if not isinstance(cause, ClientError):
            return True  # a timeout or a broken connection
        if self.error_code in _TRANSIENT_CODES:
            return True
        status = cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return isinstance(status, int) and status >= 500

    @property
    def refused_ciphertext(self) -> bool:
        """Whether KMS refused a Decrypt because of the wrapped key itself:
        the payload carrying it was altered or is not the named key's."""
        return self.op == "Decrypt" and self.error_code in _REFUSED_CIPHERTEXT_CODES


def _describe(cause: BaseException) -> str:
    """A message for cause that names what happened, without request or
    response contents."""
    if isinstance(cause, ClientError):
        err = cause.response.get("Error", {})
        return f"{err.get('Code', 'error')}: {err.get('Message', '')}".rstrip(": ")
    text = str(cause)
    return f"{type(cause).__name__}: {text}" if text else type(cause).__name__
