package io.github.temporalkms.kmscodec;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedOutputStream;
import com.google.protobuf.UnsafeByteOperations;
import io.temporal.api.common.v1.Payload;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.security.SecureRandom;
import java.util.Map;

/**
 * Seals payloads under one data key. Building it validates the header once and precomputes the
 * metadata and the additional authenticated data that every payload sealed under this data key
 * shares, so {@link #seal} does only per-payload work. Safe for concurrent use.
 */
final class SealingKey {
  private static final SecureRandom RANDOM = new SecureRandom();

  private final byte[] dataKey;
  private final String keyArn;
  private final byte[] aad;
  private final String identity;
  private final Map<String, ByteString> metadata;

  /**
   * @param dataKey the 32-byte data key in plaintext (copied)
   * @param keyArn the ARN of the master key that wrapped it
   * @param wrappedKey the CiphertextBlob
   * @param context the encryption context bound to the wrapped key; empty for none
   */
  SealingKey(byte[] dataKey, String keyArn, byte[] wrappedKey, Map<String, String> context) {
    if (dataKey.length != Envelope.DATA_KEY_SIZE) {
      throw new IllegalArgumentException(
          "data key is " + dataKey.length + " bytes, want " + Envelope.DATA_KEY_SIZE);
    }
    byte[] contextJson = EncryptionContextJson.encode(context);
    ByteString keyArnBytes = ByteString.copyFromUtf8(keyArn);
    ByteString wrapped = ByteString.copyFrom(wrappedKey);
    ByteString contextBytes = contextJson == null ? null : ByteString.copyFrom(contextJson);
    Envelope.checkFields(keyArnBytes, wrapped, contextBytes);
    this.dataKey = dataKey.clone();
    this.keyArn = keyArn;
    this.aad =
        Envelope.additionalData(keyArn.getBytes(StandardCharsets.UTF_8), wrappedKey, contextJson);
    this.identity = new String(aad, StandardCharsets.ISO_8859_1);
    Map<String, ByteString> md =
        contextBytes == null
            ? Map.of(
                Envelope.ENCODING_FIELD, Envelope.ENCODING_ENCRYPTED_BYTES,
                Envelope.FORMAT_FIELD, Envelope.FORMAT_BYTES,
                Envelope.KEY_ID_FIELD, keyArnBytes,
                Envelope.DATA_KEY_FIELD, wrapped)
            : Map.of(
                Envelope.ENCODING_FIELD, Envelope.ENCODING_ENCRYPTED_BYTES,
                Envelope.FORMAT_FIELD, Envelope.FORMAT_BYTES,
                Envelope.KEY_ID_FIELD, keyArnBytes,
                Envelope.DATA_KEY_FIELD, wrapped,
                Envelope.CONTEXT_FIELD, contextBytes);
    this.metadata = new java.util.TreeMap<>(md);
  }

  /** The ARN of the master key that wrapped the data key. */
  String keyArn() {
    return keyArn;
  }

  /** Equal to {@link Envelope#identity} of every payload this key seals. */
  String identity() {
    return identity;
  }

  /** Encrypts {@code p}, metadata and all, into a new kms-envelope-v1 payload. */
  Payload seal(Payload p) {
    byte[] plaintext = new byte[p.getSerializedSize()];
    try {
      CodedOutputStream out = CodedOutputStream.newInstance(plaintext);
      // Map entries sorted by key, as every kmscodec encoder writes them.
      out.useDeterministicSerialization();
      p.writeTo(out);
      out.checkNoSpaceLeft();
    } catch (IOException e) {
      throw new IllegalStateException("serializing a payload into memory failed", e);
    }
    byte[] salt = new byte[Envelope.SALT_SIZE];
    RANDOM.nextBytes(salt);
    return sealPlaintext(plaintext, salt);
  }

  /**
   * Seals {@code plaintext}, the serialized payload, with {@code salt}. The plaintext is encrypted
   * into a buffer of its own rather than in place, which the JDK's AES-GCM does several times
   * slower.
   */
  Payload sealPlaintext(byte[] plaintext, byte[] salt) {
    if (salt.length != Envelope.SALT_SIZE) {
      throw new IllegalArgumentException("salt is " + salt.length + " bytes");
    }
    int header = Envelope.SALT_SIZE + Envelope.COMMITMENT_SIZE;
    byte[] data = new byte[header + plaintext.length + Envelope.TAG_SIZE];
    PayloadKeys keys = PayloadKeys.derive(dataKey, salt);
    System.arraycopy(salt, 0, data, 0, Envelope.SALT_SIZE);
    System.arraycopy(keys.commitment, 0, data, Envelope.SALT_SIZE, Envelope.COMMITMENT_SIZE);
    keys.seal(plaintext, data, header, aad);
    return Payload.newBuilder()
        .putAllMetadata(metadata)
        .setData(UnsafeByteOperations.unsafeWrap(data)) // data is never written again
        .build();
  }
}
