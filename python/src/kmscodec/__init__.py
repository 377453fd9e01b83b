"""Envelope encryption of Temporal payloads with keys in AWS KMS, in the
kms-envelope-v1 format shared with the Go, TypeScript and Java codecs.

    codec = KMSCodec(kms_client(), "alias/temporal")
    client = await Client.connect("localhost:7233", data_converter=data_converter(codec))
"""

from kmscodec._codec import NAMESPACE_CONTEXT_KEY, KMSCodec, data_converter
from kmscodec._errors import (
    AuthenticationFailedError,
    InvalidKMSResponseError,
    KeyNotAllowedError,
    KMSCodecError,
    KMSError,
    MalformedPayloadError,
    NamespaceMismatchError,
    UnencryptedPayloadError,
    UnsupportedFormatError,
)
from kmscodec._kms import is_key_arn, kms_client

__all__ = [
    "NAMESPACE_CONTEXT_KEY",
    "AuthenticationFailedError",
    "InvalidKMSResponseError",
    "KMSCodec",
    "KMSCodecError",
    "KMSError",
    "KeyNotAllowedError",
    "MalformedPayloadError",
    "NamespaceMismatchError",
    "UnencryptedPayloadError",
    "UnsupportedFormatError",
    "data_converter",
    "is_key_arn",
    "kms_client",
]
