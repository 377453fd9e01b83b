/**
 * kmscodec for the Temporal TypeScript SDK: envelope encryption of
 * payloads with data keys from AWS KMS, in the kms-envelope-v1 format.
 *
 * @packageDocumentation
 */

export { KMSCodec, DEFAULTS, NAMESPACE_CONTEXT_KEY, type KMSCodecOptions } from './codec';
export { kmsDataConverter } from './data-converter';
export type { EncryptionContext } from './context';
export type { Clock } from './cache';
export {
  AuthenticationFailedError,
  InvalidKMSResponseError,
  InvalidOptionsError,
  KMSCodecError,
  KMSError,
  KMSTimeoutError,
  KeyNotAllowedError,
  MalformedPayloadError,
  NilPayloadError,
  NamespaceMismatchError,
  UnencryptedPayloadError,
  UnsupportedFormatError,
  type KMSOperation,
} from './errors';
export { isKeyArn } from './arn';
export { FORMAT } from './envelope';
