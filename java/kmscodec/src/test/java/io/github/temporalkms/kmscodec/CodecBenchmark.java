package io.github.temporalkms.kmscodec;

import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import io.temporal.api.common.v1.Payload;
import java.nio.ByteBuffer;
import java.security.GeneralSecurityException;
import java.security.SecureRandom;
import java.util.List;
import java.util.concurrent.TimeUnit;
import javax.crypto.Cipher;
import javax.crypto.spec.GCMParameterSpec;
import javax.crypto.spec.SecretKeySpec;
import org.openjdk.jmh.annotations.Benchmark;
import org.openjdk.jmh.annotations.BenchmarkMode;
import org.openjdk.jmh.annotations.Mode;
import org.openjdk.jmh.annotations.OutputTimeUnit;
import org.openjdk.jmh.annotations.Param;
import org.openjdk.jmh.annotations.Scope;
import org.openjdk.jmh.annotations.Setup;
import org.openjdk.jmh.annotations.State;

/**
 * The codec's cost per payload with warm caches (KMS is the in-process fake and is not called
 * after set-up), against two baselines in the same run: AES-256-GCM of the payload's bytes alone
 * ({@code raw}), and a codec in the style of Temporal's samples ({@code staticKey}): one static
 * key, a 12-byte random nonce, AES-GCM of the serialized payload, metadata {@code encoding:
 * binary/encrypted} and {@code encryption-key-id}, and a {@code Cipher} looked up per call as the
 * samples do. Run with {@code make bench-java}.
 */
@State(Scope.Benchmark)
@BenchmarkMode(Mode.AverageTime)
@OutputTimeUnit(TimeUnit.MICROSECONDS)
public class CodecBenchmark {
  @Param({"1024", "1048576"})
  public int size;

  private KmsPayloadCodec codec;
  private StaticKeyCodec staticKey;
  private List<Payload> plain;
  private List<Payload> sealed;
  private List<Payload> staticSealed;
  private byte[] rawKey;
  private byte[] rawPlaintext;
  private byte[] rawCiphertext;
  private byte[] rawNonce;
  private final SecureRandom random = new SecureRandom();
  private final ThreadLocal<Cipher> rawCipher = ThreadLocal.withInitial(CodecBenchmark::gcm);

  @Setup
  public void setUp() {
    byte[] data = new byte[size];
    random.nextBytes(data);
    plain =
        List.of(
            Payload.newBuilder()
                .putMetadata("encoding", ByteString.copyFromUtf8("binary/plain"))
                .setData(ByteString.copyFrom(data))
                .build());
    codec =
        KmsPayloadCodec.newBuilder()
            .kmsClient(new FakeKms().client)
            .keyId(FakeKms.KEY_ARN)
            .namespace("default")
            .build();
    sealed = codec.encode(plain); // warms the data key for encode and decode alike
    codec.decode(sealed);
    byte[] key = new byte[32];
    random.nextBytes(key);
    staticKey = new StaticKeyCodec(key, "test-key");
    staticSealed = staticKey.encode(plain);

    rawKey = new byte[32];
    random.nextBytes(rawKey);
    rawPlaintext = data;
    rawNonce = new byte[12];
    random.nextBytes(rawNonce);
    rawCiphertext = rawSeal(rawNonce);
  }

  KmsPayloadCodec codec() {
    return codec;
  }

  @Benchmark
  public List<Payload> kmsEncode() {
    return codec.encode(plain);
  }

  @Benchmark
  public List<Payload> kmsDecode() {
    return codec.decode(sealed);
  }

  @Benchmark
  public List<Payload> staticKeyEncode() {
    return staticKey.encode(plain);
  }

  @Benchmark
  public List<Payload> staticKeyDecode() {
    return staticKey.decode(staticSealed);
  }

  @Benchmark
  public byte[] rawEncrypt() {
    byte[] nonce = new byte[12];
    random.nextBytes(nonce);
    return rawSeal(nonce);
  }

  @Benchmark
  public byte[] rawDecrypt() throws GeneralSecurityException {
    Cipher c = rawCipher.get();
    c.init(Cipher.DECRYPT_MODE, new SecretKeySpec(rawKey, "AES"), new GCMParameterSpec(128, rawNonce));
    return c.doFinal(rawCiphertext);
  }

  private byte[] rawSeal(byte[] nonce) {
    try {
      Cipher c = rawCipher.get();
      c.init(Cipher.ENCRYPT_MODE, new SecretKeySpec(rawKey, "AES"), new GCMParameterSpec(128, nonce));
      return c.doFinal(rawPlaintext);
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  private static Cipher gcm() {
    try {
      return Cipher.getInstance("AES/GCM/NoPadding");
    } catch (GeneralSecurityException e) {
      throw new IllegalStateException(e);
    }
  }

  /** The samples-style codec: a static key, a random nonce, AES-GCM of the serialized payload. */
  static final class StaticKeyCodec {
    private static final ByteString ENCODING = ByteString.copyFromUtf8("binary/encrypted");
    private final SecretKeySpec key;
    private final ByteString keyId;
    private final SecureRandom random = new SecureRandom();

    StaticKeyCodec(byte[] key, String keyId) {
      this.key = new SecretKeySpec(key, "AES");
      this.keyId = ByteString.copyFromUtf8(keyId);
    }

    List<Payload> encode(List<Payload> payloads) {
      try {
        byte[] nonce = new byte[12];
        random.nextBytes(nonce);
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.ENCRYPT_MODE, key, new GCMParameterSpec(128, nonce));
        byte[] sealed = c.doFinal(payloads.get(0).toByteArray());
        byte[] data = ByteBuffer.allocate(12 + sealed.length).put(nonce).put(sealed).array();
        return List.of(
            Payload.newBuilder()
                .putMetadata("encoding", ENCODING)
                .putMetadata("encryption-key-id", keyId)
                .setData(ByteString.copyFrom(data))
                .build());
      } catch (GeneralSecurityException e) {
        throw new IllegalStateException(e);
      }
    }

    List<Payload> decode(List<Payload> payloads) {
      try {
        Payload p = payloads.get(0);
        if (!ENCODING.equals(p.getMetadataOrThrow("encoding"))
            || !keyId.equals(p.getMetadataOrThrow("encryption-key-id"))) {
          throw new IllegalStateException("not this codec's payload");
        }
        byte[] data = p.getData().toByteArray();
        Cipher c = Cipher.getInstance("AES/GCM/NoPadding");
        c.init(Cipher.DECRYPT_MODE, key, new GCMParameterSpec(128, data, 0, 12));
        return List.of(Payload.parseFrom(c.doFinal(data, 12, data.length - 12)));
      } catch (GeneralSecurityException | InvalidProtocolBufferException e) {
        throw new IllegalStateException(e);
      }
    }
  }
}
