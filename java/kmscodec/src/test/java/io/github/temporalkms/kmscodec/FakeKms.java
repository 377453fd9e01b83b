package io.github.temporalkms.kmscodec;

import static org.mockito.ArgumentMatchers.any;
import static org.mockito.Mockito.mock;
import static org.mockito.Mockito.when;

import java.nio.ByteBuffer;
import java.security.SecureRandom;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import software.amazon.awssdk.core.SdkBytes;
import software.amazon.awssdk.services.kms.KmsClient;
import software.amazon.awssdk.services.kms.model.DecryptRequest;
import software.amazon.awssdk.services.kms.model.DecryptResponse;
import software.amazon.awssdk.services.kms.model.DescribeKeyRequest;
import software.amazon.awssdk.services.kms.model.DescribeKeyResponse;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyRequest;
import software.amazon.awssdk.services.kms.model.GenerateDataKeyResponse;
import software.amazon.awssdk.services.kms.model.InvalidCiphertextException;
import software.amazon.awssdk.services.kms.model.KeyMetadata;
import software.amazon.awssdk.services.kms.model.NotFoundException;

/**
 * An in-process stand-in for KMS, as a Mockito mock of {@link KmsClient} so that tests count and
 * override its calls: GenerateDataKey returns a random data key under a random "wrapped key", and
 * Decrypt gives it back only for the same key ARN and encryption context, as KMS does.
 */
final class FakeKms {
  static final String KEY_ARN =
      "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  static final String OLD_KEY_ARN =
      "arn:aws:kms:us-east-1:111122223333:key/0000abcd-12ab-34cd-56ef-1234567890ab";
  static final String ALIAS = "alias/temporal";

  private static final SecureRandom RANDOM = new SecureRandom();

  final KmsClient client = mock(KmsClient.class);
  private final Map<ByteBuffer, Wrapped> wrapped = new ConcurrentHashMap<>();
  private volatile String aliasTarget = KEY_ARN;

  private static final class Wrapped {
    final String keyArn;
    final byte[] plaintext;
    final Map<String, String> context;

    Wrapped(String keyArn, byte[] plaintext, Map<String, String> context) {
      this.keyArn = keyArn;
      this.plaintext = plaintext;
      this.context = context;
    }
  }

  FakeKms() {
    when(client.generateDataKey(any(GenerateDataKeyRequest.class)))
        .thenAnswer(inv -> generate(inv.getArgument(0)));
    when(client.decrypt(any(DecryptRequest.class))).thenAnswer(inv -> decrypt(inv.getArgument(0)));
    when(client.describeKey(any(DescribeKeyRequest.class)))
        .thenAnswer(inv -> describe(inv.getArgument(0)));
  }

  /** Points {@link #ALIAS} at another key. */
  void moveAlias(String keyArn) {
    aliasTarget = keyArn;
  }

  private String resolve(String keyId) {
    if (ALIAS.equals(keyId)) {
      return aliasTarget;
    }
    if (KEY_ARN.equals(keyId) || OLD_KEY_ARN.equals(keyId)) {
      return keyId;
    }
    throw NotFoundException.builder().message("no such key").build();
  }

  GenerateDataKeyResponse generate(GenerateDataKeyRequest request) {
    String arn = resolve(request.keyId());
    byte[] plaintext = new byte[32];
    byte[] blob = new byte[150];
    RANDOM.nextBytes(plaintext);
    RANDOM.nextBytes(blob);
    wrapped.put(ByteBuffer.wrap(blob), new Wrapped(arn, plaintext.clone(), Map.copyOf(request.encryptionContext())));
    return GenerateDataKeyResponse.builder()
        .keyId(arn)
        .plaintext(SdkBytes.fromByteArray(plaintext))
        .ciphertextBlob(SdkBytes.fromByteArray(blob))
        .build();
  }

  DecryptResponse decrypt(DecryptRequest request) {
    Wrapped w = wrapped.get(ByteBuffer.wrap(request.ciphertextBlob().asByteArray()));
    if (w == null
        || !w.keyArn.equals(request.keyId())
        || !w.context.equals(request.encryptionContext())) {
      throw InvalidCiphertextException.builder().message("invalid ciphertext").build();
    }
    return DecryptResponse.builder()
        .keyId(w.keyArn)
        .plaintext(SdkBytes.fromByteArray(w.plaintext.clone()))
        .build();
  }

  DescribeKeyResponse describe(DescribeKeyRequest request) {
    return DescribeKeyResponse.builder()
        .keyMetadata(KeyMetadata.builder().arn(resolve(request.keyId())).build())
        .build();
  }
}
