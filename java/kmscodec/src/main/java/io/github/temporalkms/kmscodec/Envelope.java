package io.github.temporalkms.kmscodec;

import com.google.protobuf.ByteString;
import com.google.protobuf.CodedInputStream;
import io.temporal.api.common.v1.Payload;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.security.MessageDigest;
import java.util.Map;

/**
 * A parsed kms-envelope-v1 payload (docs/FORMAT.md): what it names and what it holds, not yet
 * decrypted. Parsing needs no key, so a whole batch is checked before any KMS call.
 */
final class Envelope {
  static final String FORMAT = "kms-envelope-v1";
  static final String ENCODING_ENCRYPTED = "binary/encrypted";
  static final String ENCODING_FIELD = "encoding";
  static final String FORMAT_FIELD = "encryption-format";
  static final String KEY_ID_FIELD = "encryption-key-id";
  static final String DATA_KEY_FIELD = "encryption-data-key";
  static final String CONTEXT_FIELD = "encryption-context";

  static final int DATA_KEY_SIZE = 32;
  static final int SALT_SIZE = 32;
  static final int COMMITMENT_SIZE = 32;
  static final int TAG_SIZE = 16;
  /** How much longer {@code data} is than the protobuf encoding of the input payload. */
  static final int OVERHEAD = SALT_SIZE + COMMITMENT_SIZE + TAG_SIZE;

  static final int MAX_KEY_ARN_SIZE = 2 << 10;
  static final int MAX_WRAPPED_KEY_SIZE = 4 << 10;
  static final int MAX_CONTEXT_SIZE = 8 << 10;

  static final ByteString ENCODING_ENCRYPTED_BYTES = ByteString.copyFromUtf8(ENCODING_ENCRYPTED);
  static final ByteString FORMAT_BYTES = ByteString.copyFromUtf8(FORMAT);

  final String keyArn;
  final byte[] wrappedKey;
  /** The encryption-context value, {@code null} when absent. */
  final byte[] contextJson;
  /** The additional authenticated data; as a string, the identity of the data key. */
  final byte[] aad;

  final String identity;
  private final ByteString data;

  private Envelope(String keyArn, byte[] wrappedKey, byte[] contextJson, ByteString data) {
    this.keyArn = keyArn;
    this.wrappedKey = wrappedKey;
    this.contextJson = contextJson;
    this.data = data;
    this.aad = additionalData(keyArn.getBytes(StandardCharsets.UTF_8), wrappedKey, contextJson);
    this.identity = new String(aad, StandardCharsets.ISO_8859_1);
  }

  /**
   * Reads the envelope of {@code p}, or returns {@code null} for a payload this format did not
   * produce (not {@code binary/encrypted}, or without {@code encryption-format}).
   *
   * @throws UnsupportedFormatException for another encryption format
   * @throws MalformedPayloadException for a kms-envelope-v1 payload whose fields are missing or
   *     out of bounds
   */
  static Envelope parse(Payload p) {
    Map<String, ByteString> md = p.getMetadataMap();
    ByteString format = md.get(FORMAT_FIELD);
    if (!ENCODING_ENCRYPTED_BYTES.equals(md.get(ENCODING_FIELD)) || format == null) {
      return null;
    }
    if (!FORMAT_BYTES.equals(format)) {
      throw new UnsupportedFormatException("unsupported encryption format " + quoted(format));
    }
    ByteString keyArn = md.getOrDefault(KEY_ID_FIELD, ByteString.EMPTY);
    ByteString wrappedKey = md.getOrDefault(DATA_KEY_FIELD, ByteString.EMPTY);
    ByteString context = md.get(CONTEXT_FIELD);
    checkFields(keyArn, wrappedKey, context);
    if (context != null && context.isEmpty()) {
      throw new MalformedPayloadException(CONTEXT_FIELD + " is present but empty");
    }
    if (p.getData().size() < OVERHEAD) {
      throw new MalformedPayloadException(
          "data is " + p.getData().size() + " bytes, shorter than the " + OVERHEAD
              + "-byte minimum");
    }
    return new Envelope(
        keyArn.toStringUtf8(),
        wrappedKey.toByteArray(),
        context == null ? null : context.toByteArray(),
        p.getData());
  }

  /** The limits that both sealing and parsing apply. */
  static void checkFields(ByteString keyArn, ByteString wrappedKey, ByteString context) {
    if (keyArn.isEmpty()) {
      throw new MalformedPayloadException(KEY_ID_FIELD + " is missing or empty");
    }
    if (keyArn.size() > MAX_KEY_ARN_SIZE) {
      throw new MalformedPayloadException(
          KEY_ID_FIELD + " is " + keyArn.size() + " bytes, over the " + MAX_KEY_ARN_SIZE
              + "-byte limit");
    }
    if (!keyArn.isValidUtf8()) {
      throw new MalformedPayloadException(KEY_ID_FIELD + " is not valid UTF-8");
    }
    if (wrappedKey.isEmpty()) {
      throw new MalformedPayloadException(DATA_KEY_FIELD + " is missing or empty");
    }
    if (wrappedKey.size() > MAX_WRAPPED_KEY_SIZE) {
      throw new MalformedPayloadException(
          DATA_KEY_FIELD + " is " + wrappedKey.size() + " bytes, over the " + MAX_WRAPPED_KEY_SIZE
              + "-byte limit");
    }
    if (context != null && context.size() > MAX_CONTEXT_SIZE) {
      throw new MalformedPayloadException(
          CONTEXT_FIELD + " is " + context.size() + " bytes, over the " + MAX_CONTEXT_SIZE
              + "-byte limit");
    }
  }

  /** The encryption context to give KMS: empty when the payload has none. */
  Map<String, String> encryptionContext() {
    return contextJson == null ? Map.of() : EncryptionContextJson.decode(contextJson);
  }

  /**
   * Checks the key commitment and decrypts with {@code dataKey}, the data key KMS unwrapped from
   * {@link #wrappedKey}, returning the original payload.
   *
   * @throws AuthenticationFailedException if the payload was altered or is not under this key
   * @throws MalformedPayloadException if the authentic plaintext is not a payload
   */
  Payload open(byte[] dataKey) {
    byte[] salt = data.substring(0, SALT_SIZE).toByteArray();
    byte[] commitment = data.substring(SALT_SIZE, SALT_SIZE + COMMITMENT_SIZE).toByteArray();
    PayloadKeys keys = PayloadKeys.derive(dataKey, salt);
    if (!MessageDigest.isEqual(keys.commitment, commitment)) {
      throw new AuthenticationFailedException("key commitment does not match");
    }
    // A copy in a plain array: the JDK's AES-GCM opens a read-only buffer several times slower.
    ByteBuffer ciphertext = ByteBuffer.wrap(data.substring(SALT_SIZE + COMMITMENT_SIZE).toByteArray());
    byte[] plaintext = keys.open(ciphertext, aad);
    try {
      CodedInputStream in = CodedInputStream.newInstance(plaintext);
      in.enableAliasing(true); // data aliases the fresh plaintext array instead of copying it
      return Payload.parseFrom(in);
    } catch (IOException e) {
      // Authentic but not a payload: the sealer was broken, not the transport.
      throw new MalformedPayloadException("decrypted data is not a payload");
    }
  }

  /**
   * The AAD: "kms-envelope-v1", then the key ARN, wrapped key and context, each as a 4-byte
   * big-endian length and its bytes. Length prefixes keep two different headers from ever
   * producing the same bytes.
   */
  static byte[] additionalData(byte[] keyArn, byte[] wrappedKey, byte[] contextJson) {
    byte[] context = contextJson == null ? new byte[0] : contextJson;
    byte[] format = FORMAT.getBytes(StandardCharsets.US_ASCII);
    ByteBuffer aad =
        ByteBuffer.allocate(format.length + 12 + keyArn.length + wrappedKey.length + context.length);
    aad.put(format);
    for (byte[] field : new byte[][] {keyArn, wrappedKey, context}) {
      aad.putInt(field.length).put(field);
    }
    return aad.array();
  }

  private static String quoted(ByteString value) {
    String s = value.size() > 64 ? value.substring(0, 64).toStringUtf8() + "..." : value.toStringUtf8();
    return "\"" + s + "\"";
  }
}
