package io.github.temporalkms.kmscodec;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.catchThrowableOfType;
import static org.mockito.ArgumentMatchers.any;
import static org.mockito.Mockito.doAnswer;
import static org.mockito.Mockito.doThrow;
import static org.mockito.Mockito.never;
import static org.mockito.Mockito.reset;
import static org.mockito.Mockito.times;
import static org.mockito.Mockito.verify;
import static org.mockito.Mockito.verifyNoInteractions;
import static org.mockito.Mockito.when;

import com.google.protobuf.ByteString;
import io.temporal.api.common.v1.Payload;
import io.temporal.api.failure.v1.Failure;
import io.temporal.common.converter.DataConverter;
import io.temporal.failure.ApplicationFailure;
import io.temporal.payload.context.ActivitySerializationContext;
import io.temporal.payload.context.WorkflowSerializationContext;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.function.Consumer;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import software.amazon.awssdk.awscore.exception.AwsErrorDetails;
import software.amazon.awssdk.services.kms.model.DecryptRequest;
import software.amazon.awssdk.services.kms.model.DecryptResponse;
import software.amazon.awssdk.services.kms.model.DescribeKeyRequest;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyRequest;
import software.amazon.awssdk.services.kms.model.InvalidCiphertextException;
import software.amazon.awssdk.services.kms.model.KmsException;
import software.amazon.awssdk.core.SdkBytes;

class KmsPayloadCodecTest {
  private final FakeKms kms = new FakeKms();
  private final TestClock clock = new TestClock();
  private final ExecutorService threads = Executors.newCachedThreadPool();

  @AfterEach
  void stopThreads() {
    threads.shutdownNow();
  }

  private KmsPayloadCodec.Builder builder() {
    return KmsPayloadCodec.newBuilder().kmsClient(kms.client).keyId(FakeKms.KEY_ARN).clock(clock);
  }

  /** A second process: its own caches, the same KMS. */
  private KmsPayloadCodec freshCodec(Consumer<KmsPayloadCodec.Builder> configure) {
    KmsPayloadCodec.Builder b = builder();
    configure.accept(b);
    return b.build();
  }

  private static Payload json(String s) {
    return Payload.newBuilder()
        .putMetadata("encoding", ByteString.copyFromUtf8("json/plain"))
        .setData(ByteString.copyFromUtf8(s))
        .build();
  }

  private static List<Payload> payloads(int n) {
    List<Payload> out = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      out.add(json("{\"secret\":\"s3cret-" + i + "\"}"));
    }
    return out;
  }

  private static String metadata(Payload p, String field) {
    return p.getMetadataOrDefault(field, ByteString.EMPTY).toStringUtf8();
  }

  private void verifyKmsCalls(int generate, int decrypt) {
    verify(kms.client, times(generate)).generateDataKey(any(GenerateDataKeyRequest.class));
    verify(kms.client, times(decrypt)).decrypt(any(DecryptRequest.class));
  }

  private static KmsException kmsError(String code, int status) {
    return (KmsException)
        KmsException.builder()
            .statusCode(status)
            .awsErrorDetails(AwsErrorDetails.builder().errorCode(code).errorMessage(code).build())
            .build();
  }

  // ---- the format and the round trip ----

  @Test
  void encodeSealsEveryPayloadAsKmsEnvelopeV1AndDecodeGivesItBack() {
    KmsPayloadCodec codec = builder().namespace("payments").build();
    List<Payload> in = payloads(3);
    List<Payload> sealed = codec.encode(in);

    assertThat(sealed).hasSize(3);
    for (int i = 0; i < 3; i++) {
      Payload p = sealed.get(i);
      assertThat(p.getMetadataMap().keySet())
          .containsExactlyInAnyOrder(
              "encoding",
              "encryption-format",
              "encryption-key-id",
              "encryption-data-key",
              "encryption-context");
      assertThat(metadata(p, "encoding")).isEqualTo("binary/encrypted");
      assertThat(metadata(p, "encryption-format")).isEqualTo("kms-envelope-v1");
      assertThat(metadata(p, "encryption-key-id")).isEqualTo(FakeKms.KEY_ARN);
      assertThat(metadata(p, "encryption-context"))
          .isEqualTo("{\"temporal-namespace\":\"payments\"}");
      assertThat(p.getData().size()).isEqualTo(in.get(i).getSerializedSize() + 80);
      assertThat(p.getData().toStringUtf8()).doesNotContain("s3cret");
    }
    assertThat(codec.decode(sealed)).isEqualTo(in);
  }

  @Test
  void theSerializationContextNamesTheNamespaceOfNewDataKeys() {
    KmsPayloadCodec codec =
        builder().namespace("configured").encryptionContext(Map.of("app", "billing")).build();

    Payload fromWorkflow =
        codec.withContext(new WorkflowSerializationContext("ns1", "wf-1")).encode(payloads(1)).get(0);
    Payload fromActivity =
        codec
            .withContext(
                new ActivitySerializationContext("ns2", "wf-1", "Wf", "Act", "q", false))
            .encode(payloads(1))
            .get(0);
    Payload standalone = codec.encode(payloads(1)).get(0);

    assertThat(metadata(fromWorkflow, "encryption-context"))
        .isEqualTo("{\"app\":\"billing\",\"temporal-namespace\":\"ns1\"}");
    assertThat(metadata(fromActivity, "encryption-context"))
        .isEqualTo("{\"app\":\"billing\",\"temporal-namespace\":\"ns2\"}");
    assertThat(metadata(standalone, "encryption-context"))
        .isEqualTo("{\"app\":\"billing\",\"temporal-namespace\":\"configured\"}");
    verify(kms.client)
        .generateDataKey(
            GenerateDataKeyRequest.builder()
                .keyId(FakeKms.KEY_ARN)
                .keySpec("AES_256")
                .encryptionContext(Map.of("app", "billing", "temporal-namespace", "ns1"))
                .overrideConfiguration(o -> o.apiCallTimeout(Duration.ofSeconds(5)))
                .build());
    // Views share the caches: all three decode with any view and no Decrypt call.
    assertThat(codec.decode(List.of(fromWorkflow, fromActivity, standalone))).hasSize(3);
    verifyKmsCalls(3, 0);
  }

  @Test
  void withoutNamespaceOrContextTheEncryptionContextFieldIsAbsent() {
    Payload p = builder().build().encode(payloads(1)).get(0);
    assertThat(p.getMetadataMap()).doesNotContainKey("encryption-context");
  }

  @Test
  void tamperedPayloadFailsAuthenticationNamingItsPosition() {
    KmsPayloadCodec codec = builder().build();
    List<Payload> sealed = new ArrayList<>(codec.encode(payloads(2)));
    byte[] data = sealed.get(1).getData().toByteArray();
    data[data.length - 1] ^= 1;
    sealed.set(1, sealed.get(1).toBuilder().setData(ByteString.copyFrom(data)).build());

    assertThatThrownBy(() -> codec.decode(sealed))
        .isInstanceOf(AuthenticationFailedException.class)
        .hasMessageStartingWith("kmscodec: decode payload 2 of 2: ");
  }

  // ---- KMS economy and limits ----

  @Test
  void oneDataKeySealsManyPayloadsAndTheCodecReadsItsOwnWithoutDecrypt() {
    KmsPayloadCodec codec = builder().build();
    List<Payload> sealed = new ArrayList<>();
    for (int i = 0; i < 100; i++) {
      sealed.addAll(codec.encode(payloads(10)));
    }
    codec.decode(sealed);
    verifyKmsCalls(1, 0);
    assertThat(sealed.stream().map(p -> p.getMetadataOrThrow("encryption-data-key")).distinct())
        .hasSize(1);
  }

  @Test
  void aDataKeyIsRotatedAfterMaxPayloadsPerDataKey() {
    KmsPayloadCodec codec = builder().maxPayloadsPerDataKey(3).build();
    codec.encode(payloads(7));
    verifyKmsCalls(3, 0);
  }

  @Test
  void oneDataKeyPerPayloadWhenMaxPayloadsPerDataKeyIsOne() {
    KmsPayloadCodec codec = builder().maxPayloadsPerDataKey(1).build();
    codec.encode(payloads(5));
    verifyKmsCalls(5, 0);
  }

  @Test
  void aDataKeyIsRotatedAfterDataKeyMaxAge() {
    KmsPayloadCodec codec = builder().dataKeyMaxAge(Duration.ofMinutes(5)).build();
    codec.encode(payloads(1));
    clock.advance(Duration.ofMinutes(4));
    codec.encode(payloads(1));
    verifyKmsCalls(1, 0);
    clock.advance(Duration.ofMinutes(1));
    codec.encode(payloads(1));
    verifyKmsCalls(2, 0);
  }

  @Test
  void aDataKeyIsRotatedAfterMaxBytesPerDataKeyAndAnOversizedPayloadGetsOneOfItsOwn() {
    KmsPayloadCodec codec = builder().maxBytesPerDataKey(130).build();
    Payload small = json("x".repeat(30)); // 56 bytes serialized
    codec.encode(List.of(small, small)); // fits one key
    verifyKmsCalls(1, 0);
    codec.encode(List.of(small)); // over 130: a new key
    verifyKmsCalls(2, 0);
    codec.encode(List.of(json("y".repeat(500)))); // alone over the bound: still one key, not a loop
    verifyKmsCalls(3, 0);
  }

  @Test
  void aFreshCodecReadsManyPayloadsOfOneDataKeyWithOneDecrypt() {
    List<Payload> sealed = builder().build().encode(payloads(50));
    KmsPayloadCodec reader = freshCodec(b -> {});
    assertThat(reader.decode(sealed)).isEqualTo(payloads(50));
    assertThat(reader.decode(sealed)).hasSize(50);
    verifyKmsCalls(1, 1);
  }

  @Test
  void anUnwrappedDataKeyExpiresAfterDecryptCacheTtl() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    KmsPayloadCodec reader = freshCodec(b -> b.decryptCacheTtl(Duration.ofMinutes(10)));
    reader.decode(sealed);
    clock.advance(Duration.ofMinutes(9));
    reader.decode(sealed);
    verifyKmsCalls(1, 1);
    clock.advance(Duration.ofMinutes(2));
    reader.decode(sealed);
    verifyKmsCalls(1, 2);
  }

  @Test
  void theDecryptCacheHoldsAtMostDecryptCacheSizeKeys() {
    KmsPayloadCodec writer = builder().maxPayloadsPerDataKey(1).build();
    List<Payload> sealed = writer.encode(payloads(20)); // 20 data keys
    KmsPayloadCodec reader = freshCodec(b -> b.decryptCacheSize(5));
    reader.decode(sealed);
    reader.decode(sealed);
    verify(kms.client, times(40)).decrypt(any(DecryptRequest.class));
  }

  // ---- single flight ----

  private <T> List<T> runConcurrently(int n, java.util.concurrent.Callable<T> task) throws Exception {
    CountDownLatch start = new CountDownLatch(1);
    List<Future<T>> futures = new ArrayList<>();
    for (int i = 0; i < n; i++) {
      futures.add(
          threads.submit(
              () -> {
                start.await();
                return task.call();
              }));
    }
    start.countDown();
    List<T> out = new ArrayList<>();
    for (Future<T> f : futures) {
      out.add(f.get(30, TimeUnit.SECONDS));
    }
    return out;
  }

  /** Makes every KMS call of the fake take a while, so that concurrent callers overlap it. */
  private void slowKms(Duration delay) {
    doAnswer(
            inv -> {
              Thread.sleep(delay.toMillis());
              return kms.generate(inv.getArgument(0));
            })
        .when(kms.client)
        .generateDataKey(any(GenerateDataKeyRequest.class));
    doAnswer(
            inv -> {
              Thread.sleep(delay.toMillis());
              return kms.decrypt(inv.getArgument(0));
            })
        .when(kms.client)
        .decrypt(any(DecryptRequest.class));
  }

  @Test
  void concurrentColdEncodesShareOneGenerateDataKey() throws Exception {
    slowKms(Duration.ofMillis(300));
    KmsPayloadCodec codec = builder().build();
    List<List<Payload>> results = runConcurrently(16, () -> codec.encode(payloads(1)));
    assertThat(results).hasSize(16);
    verifyKmsCalls(1, 0);
  }

  @Test
  void concurrentColdDecodesShareOneDecrypt() throws Exception {
    List<Payload> sealed = builder().build().encode(payloads(1));
    slowKms(Duration.ofMillis(300));
    KmsPayloadCodec reader = freshCodec(b -> {});
    List<List<Payload>> results = runConcurrently(16, () -> reader.decode(sealed));
    assertThat(results).allSatisfy(r -> assertThat(r).isEqualTo(payloads(1)));
    verifyKmsCalls(1, 1);
  }

  @Test
  void waitersOfAFailedFlightAllFailAndTheNextCallAsksKmsAgain() throws Exception {
    doAnswer(
            inv -> {
              Thread.sleep(300);
              throw kmsError("ThrottlingException", 400);
            })
        .when(kms.client)
        .generateDataKey(any(GenerateDataKeyRequest.class));
    KmsPayloadCodec codec = builder().build();
    List<Object> results =
        runConcurrently(
            8,
            () -> {
              try {
                return codec.encode(payloads(1));
              } catch (KmsCallException e) {
                return e;
              }
            });
    assertThat(results).allSatisfy(r -> assertThat(r).isInstanceOf(KmsCallException.class));
    verify(kms.client, times(1)).generateDataKey(any(GenerateDataKeyRequest.class));

    doAnswer(inv -> kms.generate(inv.getArgument(0)))
        .when(kms.client)
        .generateDataKey(any(GenerateDataKeyRequest.class));
    assertThat(codec.encode(payloads(1))).hasSize(1);
  }

  // ---- the allow-list ----

  @Test
  void aBatchWithOnePayloadUnderADisallowedKeyFailsBeforeAnyKmsCall() {
    List<Payload> batch = new ArrayList<>(builder().build().encode(payloads(2)));
    batch.addAll(
        freshCodec(b -> b.keyId(FakeKms.OLD_KEY_ARN)).encode(payloads(1)));
    reset(kms.client);
    KmsPayloadCodec reader = freshCodec(b -> {});

    KeyNotAllowedException e =
        catchThrowableOfType(KeyNotAllowedException.class, () -> reader.decode(batch));
    assertThat(e).hasMessageContaining("decode payload 3 of 3").hasMessageContaining(FakeKms.OLD_KEY_ARN);
    verifyNoInteractions(kms.client);
  }

  @Test
  void decryptKeyIdsAllowPayloadsOfKeysRotatedAwayFrom() {
    List<Payload> old = freshCodec(b -> b.keyId(FakeKms.OLD_KEY_ARN)).encode(payloads(1));
    KmsPayloadCodec reader = freshCodec(b -> b.decryptKeyIds(List.of(FakeKms.OLD_KEY_ARN)));
    assertThat(reader.decode(old)).isEqualTo(payloads(1));
  }

  @Test
  void anAliasIsResolvedByDescribeKeyOnceAndAgainAfterDataKeyMaxAge() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    KmsPayloadCodec reader = freshCodec(b -> b.keyId(FakeKms.ALIAS));
    reader.decode(sealed);
    reader.decode(sealed);
    verify(kms.client, times(1)).describeKey(any(DescribeKeyRequest.class));

    kms.moveAlias(FakeKms.OLD_KEY_ARN);
    clock.advance(Duration.ofMinutes(5));
    assertThatThrownBy(() -> reader.decode(sealed)).isInstanceOf(KeyNotAllowedException.class);
    verify(kms.client, times(2)).describeKey(any(DescribeKeyRequest.class));
  }

  @Test
  void payloadsUnderAnAliasRecordTheKeyArnKmsReturned() {
    Payload p = freshCodec(b -> b.keyId(FakeKms.ALIAS)).encode(payloads(1)).get(0);
    assertThat(metadata(p, "encryption-key-id")).isEqualTo(FakeKms.KEY_ARN);
  }

  // ---- KMS failures ----

  @Test
  void aKmsFailureOnEncodeFailsClosedAndIsNotRemembered() {
    doThrow(kmsError("ThrottlingException", 400))
        .doAnswer(inv -> kms.generate(inv.getArgument(0)))
        .when(kms.client)
        .generateDataKey(any(GenerateDataKeyRequest.class));
    KmsPayloadCodec codec = builder().build();

    KmsCallException e =
        catchThrowableOfType(KmsCallException.class, () -> codec.encode(payloads(1)));
    assertThat(e.isTransient()).isTrue();
    assertThat(e.operation()).isEqualTo("GenerateDataKey");
    assertThat(e.getCause()).isInstanceOf(KmsException.class);
    assertThat(e).hasMessageStartingWith("kmscodec: encode payload 1 of 1: kms GenerateDataKey");

    assertThat(metadata(codec.encode(payloads(1)).get(0), "encryption-format"))
        .isEqualTo("kms-envelope-v1");
  }

  @Test
  void aWrappedKeyKmsRefusedIsRememberedForTenSeconds() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    doThrow(InvalidCiphertextException.builder().statusCode(400)
            .awsErrorDetails(AwsErrorDetails.builder().errorCode("InvalidCiphertextException").build())
            .build())
        .when(kms.client)
        .decrypt(any(DecryptRequest.class));
    KmsPayloadCodec reader = freshCodec(b -> {});

    KmsCallException first = catchThrowableOfType(KmsCallException.class, () -> reader.decode(sealed));
    assertThat(first.isTransient()).isFalse();
    assertThat(first.isRefusedCiphertext()).isTrue();
    KmsCallException second = catchThrowableOfType(KmsCallException.class, () -> reader.decode(sealed));
    assertThat(second).isNotSameAs(first).isInstanceOf(KmsCallException.class);
    verifyKmsCalls(1, 1);

    clock.advance(Duration.ofSeconds(11));
    assertThatThrownBy(() -> reader.decode(sealed)).isInstanceOf(KmsCallException.class);
    verifyKmsCalls(1, 2);
  }

  @Test
  void aTransientDecryptFailureIsNotRemembered() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    doThrow(kmsError("KMSInternalException", 500))
        .doAnswer(inv -> kms.decrypt(inv.getArgument(0)))
        .when(kms.client)
        .decrypt(any(DecryptRequest.class));
    KmsPayloadCodec reader = freshCodec(b -> {});

    KmsCallException e = catchThrowableOfType(KmsCallException.class, () -> reader.decode(sealed));
    assertThat(e.isTransient()).isTrue();
    assertThat(reader.decode(sealed)).isEqualTo(payloads(1));
    verifyKmsCalls(1, 2);
  }

  @Test
  void aDecryptAnswerNamingAnotherKeyIsRejected() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    when(kms.client.decrypt(any(DecryptRequest.class)))
        .thenReturn(
            DecryptResponse.builder()
                .keyId(FakeKms.OLD_KEY_ARN)
                .plaintext(SdkBytes.fromByteArray(new byte[32]))
                .build());
    KmsCallException e =
        catchThrowableOfType(KmsCallException.class, () -> freshCodec(b -> {}).decode(sealed));
    assertThat(e.getCause()).isInstanceOf(InvalidKmsResponseException.class);
    assertThat(e.isTransient()).isFalse();
  }

  @Test
  void aDecryptAnswerWithADataKeyOfTheWrongSizeIsRejected() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    when(kms.client.decrypt(any(DecryptRequest.class)))
        .thenReturn(
            DecryptResponse.builder()
                .keyId(FakeKms.KEY_ARN)
                .plaintext(SdkBytes.fromByteArray(new byte[16]))
                .build());
    KmsCallException e =
        catchThrowableOfType(KmsCallException.class, () -> freshCodec(b -> {}).decode(sealed));
    assertThat(e.getCause()).hasMessageContaining("16 bytes, want 32");
  }

  @Test
  void aKmsCallThatDoesNotAnswerIsAbandonedAfterKmsTimeout() {
    doAnswer(
            inv -> {
              Thread.sleep(10_000);
              return kms.generate(inv.getArgument(0));
            })
        .when(kms.client)
        .generateDataKey(any(GenerateDataKeyRequest.class));
    KmsPayloadCodec codec = builder().kmsTimeout(Duration.ofMillis(200)).build();

    long start = System.nanoTime();
    KmsCallException e = catchThrowableOfType(KmsCallException.class, () -> codec.encode(payloads(1)));
    assertThat(Duration.ofNanos(System.nanoTime() - start)).isLessThan(Duration.ofSeconds(3));
    assertThat(e.getCause()).isInstanceOf(TimeoutException.class);
    assertThat(e.isTransient()).isTrue();
  }

  // ---- pass-through and policy switches ----

  @Test
  void payloadsNotInThisFormatPassThroughUnchanged() {
    Payload plain = json("{}");
    Payload otherCodec =
        Payload.newBuilder()
            .putMetadata("encoding", ByteString.copyFromUtf8("binary/encrypted"))
            .putMetadata("encryption-key-id", ByteString.copyFromUtf8("test-key"))
            .setData(ByteString.copyFromUtf8("opaque"))
            .build();
    List<Payload> out = builder().build().decode(List.of(plain, otherCodec));
    assertThat(out.get(0)).isSameAs(plain);
    assertThat(out.get(1)).isSameAs(otherCodec);
    verifyNoInteractions(kms.client);
  }

  @Test
  void rejectUnencryptedRefusesPlainPayloads() {
    KmsPayloadCodec codec = builder().rejectUnencrypted(true).build();
    assertThatThrownBy(() -> codec.decode(List.of(json("{}"))))
        .isInstanceOf(UnencryptedPayloadException.class);
  }

  @Test
  void disableEncryptionPassesEncodeThroughWhileDecodeStillDecrypts() {
    List<Payload> sealed = builder().build().encode(payloads(1));
    KmsPayloadCodec rolledBack = freshCodec(b -> b.disableEncryption(true));
    assertThat(rolledBack.encode(payloads(1))).isEqualTo(payloads(1));
    assertThat(rolledBack.decode(sealed)).isEqualTo(payloads(1));
    verifyKmsCalls(1, 1);
  }

  @Test
  void anotherEncryptionFormatIsUnsupportedNotPassedThrough() {
    Payload p =
        Payload.newBuilder()
            .putMetadata("encoding", ByteString.copyFromUtf8("binary/encrypted"))
            .putMetadata("encryption-format", ByteString.copyFromUtf8("kms-envelope-v2"))
            .build();
    assertThatThrownBy(() -> builder().build().decode(List.of(p)))
        .isInstanceOf(UnsupportedFormatException.class);
  }

  @Test
  void requireSameNamespaceRefusesAnotherNamespacesPayloadBeforeKms() {
    List<Payload> sealed = builder().namespace("ns1").build().encode(payloads(1));
    KmsPayloadCodec reader = freshCodec(b -> b.namespace("ns2").requireSameNamespace(true));
    assertThatThrownBy(() -> reader.decode(sealed)).isInstanceOf(NamespaceMismatchException.class);
    verifyKmsCalls(1, 0);
    assertThat(reader.withNamespace("ns1").decode(sealed)).isEqualTo(payloads(1));
  }

  @Test
  void aMalformedPayloadFailsWithoutKms() {
    Payload p =
        Payload.newBuilder()
            .putMetadata("encoding", ByteString.copyFromUtf8("binary/encrypted"))
            .putMetadata("encryption-format", ByteString.copyFromUtf8("kms-envelope-v1"))
            .putMetadata("encryption-key-id", ByteString.copyFromUtf8(FakeKms.KEY_ARN))
            .putMetadata("encryption-data-key", ByteString.copyFromUtf8("x"))
            .setData(ByteString.copyFrom(new byte[79]))
            .build();
    assertThatThrownBy(() -> builder().build().decode(List.of(p)))
        .isInstanceOf(MalformedPayloadException.class)
        .hasMessageContaining("shorter than the 80-byte minimum");
    verifyNoInteractions(kms.client);
  }

  // ---- construction ----

  @Test
  void theBuilderRefusesInvalidSettings() {
    assertThatThrownBy(() -> KmsPayloadCodec.newBuilder().keyId(FakeKms.KEY_ARN).build())
        .hasMessageContaining("kmsClient is required");
    assertThatThrownBy(() -> KmsPayloadCodec.newBuilder().kmsClient(kms.client).build())
        .hasMessageContaining("keyId is required");
    assertThatThrownBy(
            () -> builder().encryptionContext(Map.of("temporal-namespace", "x")).build())
        .hasMessageContaining("must not set \"temporal-namespace\"");
    assertThatThrownBy(() -> builder().decryptKeyIds(List.of(FakeKms.ALIAS)).build())
        .hasMessageContaining("is not a key ARN");
    assertThatThrownBy(() -> builder().maxPayloadsPerDataKey(0).build())
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(() -> builder().kmsTimeout(Duration.ZERO).build())
        .isInstanceOf(IllegalArgumentException.class);
    assertThatThrownBy(
            () -> builder().encryptionContext(Map.of("big", "x".repeat(5000))).build())
        .hasMessageContaining("keep it under 4096");
    assertThat(KmsPayloadCodec.newBuilder().kmsClient(kms.client).disableEncryption(true).build())
        .isNotNull();
    verifyNoInteractions(kms.client);
  }

  // ---- the data converter ----

  @Test
  void theDataConverterEncryptsValuesAndFailureMessages() {
    DataConverter dc = builder().namespace("payments").build().newDataConverter();
    Payload value = dc.toPayload("s3cret").orElseThrow();
    assertThat(metadata(value, "encryption-format")).isEqualTo("kms-envelope-v1");
    assertThat(dc.fromPayload(value, String.class, String.class)).isEqualTo("s3cret");

    Failure failure =
        dc.exceptionToFailure(ApplicationFailure.newFailure("card 4111 declined", "Declined"));
    assertThat(failure.getMessage()).isEqualTo("Encoded failure");
    assertThat(failure.getStackTrace()).isEmpty();
    assertThat(metadata(failure.getEncodedAttributes(), "encryption-format"))
        .isEqualTo("kms-envelope-v1");
    assertThat(failure.toByteString().toString(StandardCharsets.UTF_8)).doesNotContain("4111");
    assertThat(dc.failureToException(failure)).hasMessageContaining("card 4111 declined");
  }

  @Test
  void collectionsOfNoPayloadsNeedNoKms() {
    KmsPayloadCodec codec = builder().build();
    assertThat(codec.encode(Collections.emptyList())).isEmpty();
    assertThat(codec.decode(Collections.emptyList())).isEmpty();
    verifyNoInteractions(kms.client);
    verify(kms.client, never()).describeKey(any(DescribeKeyRequest.class));
  }
}
