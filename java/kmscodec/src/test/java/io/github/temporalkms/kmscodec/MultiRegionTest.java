package io.github.temporalkms.kmscodec;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.mockito.ArgumentMatchers.any;
import static org.mockito.Mockito.inOrder;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.never;
import static org.mockito.Mockito.times;
import static org.mockito.Mockito.verify;
import static org.mockito.Mockito.verifyNoInteractions;
import static org.mockito.Mockito.when;

import com.google.protobuf.ByteString;
import io.temporal.api.common.v1.Payload;
import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.function.Consumer;
import org.junit.jupiter.api.Test;
import org.mockito.ArgumentCaptor;
import org.mockito.InOrder;
import software.amazon.awssdk.awscore.exception.AwsErrorDetails;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.services.kms.KmsClient;
import software.amazon.awssdk.services.kms.model.DecryptRequest;
import software.amazon.awssdk.services.kms.model.DecryptResponse;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyRequest;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyResponse;
import software.amazon.awssdk.services.kms.model.InvalidCiphertextException;
import software.amazon.awssdk.services.kms.model.KmsException;
import software.amazon.awssdk.services.kms.model.KmsInternalException;

/**
 * The "Multi-Region keys" rule of docs/FORMAT.md: which payloads the allow-list admits, and which
 * regional KMS client, naming which replica, unwraps their data keys.
 */
class MultiRegionTest {
  private static final String WRITER = "us-east-1";
  private static final String READER = "eu-west-1";
  private static final String SPARE = "ap-southeast-2";
  private static final String MRK = "mrk-1234abcd12ab34cd56ef1234567890ab";
  private static final String MRK_WRITER = "arn:aws:kms:us-east-1:111122223333:key/" + MRK;
  private static final String MRK_READER = "arn:aws:kms:eu-west-1:111122223333:key/" + MRK;
  private static final String MRK_SPARE = "arn:aws:kms:ap-southeast-2:111122223333:key/" + MRK;
  private static final String SINGLE_WRITER =
      "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  private static final String SINGLE_READER =
      "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

  private static final SecureRandom RANDOM = new SecureRandom();

  /** Data keys by wrapped blob, shared by every region's KMS as replicas share key material. */
  private final Map<ByteBuffer, byte[]> material = new ConcurrentHashMap<>();

  private final KmsClient writerKms = regionalKms(WRITER);
  private final KmsClient readerKms = regionalKms(READER);
  private final KmsClient spareKms = regionalKms(SPARE);

  /**
   * A Mockito KMS of one region: GenerateDataKey answers with the ARN asked for, Decrypt unwraps
   * any blob of the shared material but only under a key ARN of its own region, and names that
   * ARN in its answer, as the replica of a multi-Region key does.
   */
  private KmsClient regionalKms(String region) {
    KmsClient client = mock(KmsClient.class);
    when(client.generateDataKey(any(GenerateDataKeyRequest.class)))
        .thenAnswer(
            inv -> {
              GenerateDataKeyRequest request = inv.getArgument(0);
              byte[] plaintext = new byte[32];
              byte[] blob = new byte[150];
              RANDOM.nextBytes(plaintext);
              RANDOM.nextBytes(blob);
              material.put(ByteBuffer.wrap(blob), plaintext.clone());
              return GenerateDataKeyResponse.builder()
                  .keyId(request.keyId())
                  .plaintext(SdkBytes.fromByteArray(plaintext))
                  .ciphertextBlob(SdkBytes.fromByteArray(blob))
                  .build();
            });
    when(client.decrypt(any(DecryptRequest.class)))
        .thenAnswer(
            inv -> {
              DecryptRequest request = inv.getArgument(0);
              byte[] plaintext =
                  material.get(ByteBuffer.wrap(request.ciphertextBlob().asByteArray()));
              boolean ownRegion =
                  KeyArns.parse(request.keyId()).map(a -> a.region().equals(region)).orElse(false);
              if (plaintext == null || !ownRegion) {
                throw InvalidCiphertextException.builder().message("invalid ciphertext").build();
              }
              return DecryptResponse.builder()
                  .keyId(request.keyId())
                  .plaintext(SdkBytes.fromByteArray(plaintext.clone()))
                  .build();
            });
    return client;
  }

  private static Payload json(String s) {
    return Payload.newBuilder()
        .putMetadata("encoding", ByteString.copyFromUtf8("json/plain"))
        .setData(ByteString.copyFromUtf8(s))
        .build();
  }

  /** A payload that a codec in the writer's region encrypted under {@code keyArn}. */
  private Payload writtenUnder(String keyArn) {
    KmsPayloadCodec writer =
        KmsPayloadCodec.newBuilder().kmsClient(writerKms).keyId(keyArn).region(WRITER).build();
    return writer.encode(List.of(json("{\"secret\":\"s3cret\"}"))).get(0);
  }

  /** A codec of the reader's region, allowed {@code allowed}, with clients of every region. */
  private KmsPayloadCodec reader(String allowed, Consumer<KmsPayloadCodec.Builder> configure) {
    KmsPayloadCodec.Builder b =
        KmsPayloadCodec.newBuilder()
            .kmsClient(readerKms)
            .keyId(MRK_READER)
            .decryptKeyIds(List.of(allowed))
            .region(READER)
            .regionalKmsClients(Map.of(WRITER, writerKms, SPARE, spareKms));
    configure.accept(b);
    return b.build();
  }

  private static String decryptKeyIdOf(KmsClient client) {
    ArgumentCaptor<DecryptRequest> request = ArgumentCaptor.forClass(DecryptRequest.class);
    verify(client).decrypt(request.capture());
    return request.getValue().keyId();
  }

  @Test
  void multiRegionPayloadIsUnwrappedByTheReplicaInTheOwnRegionNeverTheWriters() {
    Payload written = writtenUnder(MRK_WRITER);

    List<Payload> read = reader(MRK_WRITER, b -> {}).decode(List.of(written));

    assertThat(read.get(0).getData().toStringUtf8()).isEqualTo("{\"secret\":\"s3cret\"}");
    assertThat(decryptKeyIdOf(readerKms)).isEqualTo(MRK_READER);
    verify(writerKms, never()).decrypt(any(DecryptRequest.class));
    verifyNoInteractions(spareKms);
  }

  @Test
  void allowingOneReplicaAllowsTheOthersOfTheSameKey() {
    Payload written = writtenUnder(MRK_WRITER);

    List<Payload> read = reader(MRK_SPARE, b -> {}).decode(List.of(written));

    assertThat(read.get(0).getData().toStringUtf8()).isEqualTo("{\"secret\":\"s3cret\"}");
  }

  @Test
  void replicaAnswerNamingAnotherKeyIsRefused() {
    Payload written = writtenUnder(MRK_WRITER);
    when(readerKms.decrypt(any(DecryptRequest.class)))
        .thenAnswer(
            inv -> {
              DecryptRequest request = inv.getArgument(0);
              return DecryptResponse.builder()
                  .keyId(MRK_WRITER) // the payload's ARN, not the replica asked
                  .plaintext(
                      SdkBytes.fromByteArray(
                          material.get(ByteBuffer.wrap(request.ciphertextBlob().asByteArray()))))
                  .build();
            });

    assertThatThrownBy(() -> reader(MRK_WRITER, b -> {}).decode(List.of(written)))
        .isInstanceOf(KmsCallException.class)
        .hasRootCauseInstanceOf(InvalidKmsResponseException.class);
    verify(writerKms, never()).decrypt(any(DecryptRequest.class));
  }

  @Test
  void singleRegionKeyOfAnotherRegionIsRefusedByTheAllowListWithoutKmsCall() {
    Payload written = writtenUnder(SINGLE_WRITER);
    KmsPayloadCodec reader = reader(SINGLE_READER, b -> {});

    assertThatThrownBy(() -> reader.decode(List.of(written)))
        .isInstanceOf(KeyNotAllowedException.class);
    verify(readerKms, never()).decrypt(any(DecryptRequest.class));
    verify(writerKms, never()).decrypt(any(DecryptRequest.class));
  }

  @Test
  void singleRegionPayloadIsUnwrappedByItsOwnRegionsClient() {
    Payload written = writtenUnder(SINGLE_WRITER);

    reader(SINGLE_WRITER, b -> {}).decode(List.of(written));

    assertThat(decryptKeyIdOf(writerKms)).isEqualTo(SINGLE_WRITER);
    verify(readerKms, never()).decrypt(any(DecryptRequest.class));
  }

  @Test
  void multiRegionKeyOfAnotherAccountIsRefused() {
    Payload written = writtenUnder("arn:aws:kms:us-east-1:444455556666:key/" + MRK);

    assertThatThrownBy(() -> reader(MRK_WRITER, b -> {}).decode(List.of(written)))
        .isInstanceOf(KeyNotAllowedException.class);
    verify(readerKms, never()).decrypt(any(DecryptRequest.class));
  }

  @Test
  void multiRegionKeyOfAnotherPartitionIsRefused() {
    Payload written = writtenUnder("arn:aws-cn:kms:us-east-1:111122223333:key/" + MRK);

    assertThatThrownBy(() -> reader(MRK_WRITER, b -> {}).decode(List.of(written)))
        .isInstanceOf(KeyNotAllowedException.class);
    verify(readerKms, never()).decrypt(any(DecryptRequest.class));
  }

  @Test
  void transientFailureFallsBackToPreferredRegionsInOrderThenTheWriters() {
    Payload written = writtenUnder(MRK_WRITER);
    when(readerKms.decrypt(any(DecryptRequest.class)))
        .thenThrow(KmsInternalException.builder().message("internal").statusCode(500).build());
    when(spareKms.decrypt(any(DecryptRequest.class)))
        .thenThrow(KmsInternalException.builder().message("internal").statusCode(500).build());
    KmsPayloadCodec reader =
        reader(MRK_WRITER, b -> b.regionPreference(List.of(SPARE, "sa-east-1")));

    List<Payload> read = reader.decode(List.of(written));

    assertThat(read.get(0).getData().toStringUtf8()).isEqualTo("{\"secret\":\"s3cret\"}");
    InOrder order = inOrder(readerKms, spareKms, writerKms);
    order.verify(readerKms).decrypt(any(DecryptRequest.class));
    order.verify(spareKms).decrypt(any(DecryptRequest.class));
    order.verify(writerKms).decrypt(any(DecryptRequest.class));
    assertThat(decryptKeyIdOf(spareKms)).isEqualTo(MRK_SPARE);
    assertThat(decryptKeyIdOf(writerKms)).isEqualTo(MRK_WRITER);
  }

  @Test
  void refusalIsNotRetriedInAnotherRegion() {
    Payload written = writtenUnder(MRK_WRITER);
    when(readerKms.decrypt(any(DecryptRequest.class)))
        .thenThrow(
            KmsException.builder()
                .message("denied")
                .statusCode(400)
                .awsErrorDetails(
                    AwsErrorDetails.builder().errorCode("AccessDeniedException").build())
                .build());
    KmsPayloadCodec reader = reader(MRK_WRITER, b -> b.regionPreference(List.of(SPARE)));

    assertThatThrownBy(() -> reader.decode(List.of(written)))
        .isInstanceOf(KmsCallException.class)
        .hasCauseInstanceOf(KmsException.class);
    verify(readerKms, times(1)).decrypt(any(DecryptRequest.class));
    verify(spareKms, never()).decrypt(any(DecryptRequest.class));
    verify(writerKms, never()).decrypt(any(DecryptRequest.class));
  }

  @Test
  void withoutRegionTheOneClientIsAskedForThePayloadsOwnKeyArn() {
    Payload written = writtenUnder(MRK_WRITER);
    KmsPayloadCodec reader =
        KmsPayloadCodec.newBuilder()
            .kmsClient(writerKms)
            .keyId(MRK_READER)
            .decryptKeyIds(List.of(MRK_WRITER))
            .build();

    reader.decode(List.of(written));

    assertThat(decryptKeyIdOf(writerKms)).isEqualTo(MRK_WRITER);
  }

  @Test
  void regionalClientsWithoutRegionAreRejectedAtBuild() {
    assertThatThrownBy(
            () ->
                KmsPayloadCodec.newBuilder()
                    .kmsClient(readerKms)
                    .keyId(MRK_READER)
                    .regionPreference(List.of(WRITER))
                    .build())
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("need region");
  }

  @Test
  void regionalClientForTheOwnRegionIsRejectedAtBuild() {
    assertThatThrownBy(() -> reader(MRK_WRITER, b -> b.regionalKmsClients(Map.of(READER, spareKms))))
        .isInstanceOf(IllegalArgumentException.class)
        .hasMessageContaining("must not name region");
  }
}
