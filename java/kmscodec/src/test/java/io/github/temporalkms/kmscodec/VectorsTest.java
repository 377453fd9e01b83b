package io.github.temporalkms.kmscodec;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.fail;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import com.google.protobuf.InvalidProtocolBufferException;
import com.google.protobuf.util.JsonFormat;
import io.temporal.api.common.v1.Payload;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import org.junit.jupiter.api.DynamicTest;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestFactory;

/**
 * Every test vector of docs/FORMAT.md, read from envelope/testdata at run time (the path comes
 * from the {@code kmscodec.vectors} system property, which the build sets), so that new vectors
 * are checked without any change here. The vectors stand in for KMS: {@code data_key} is what KMS
 * would unwrap.
 */
class VectorsTest {
  private static final ObjectMapper JSON = new ObjectMapper();
  private static final HexFormat HEX = HexFormat.of();

  static List<Path> vectorFiles() throws IOException {
    String dir = System.getProperty("kmscodec.vectors");
    assertThat(dir).as("system property kmscodec.vectors (set by the Maven build)").isNotNull();
    try (Stream<Path> files = Files.list(Path.of(dir))) {
      return files
          .filter(f -> f.getFileName().toString().endsWith(".json"))
          .sorted()
          .collect(Collectors.toList());
    }
  }

  @Test
  void everyKindOfVectorIsPresent() throws IOException {
    List<String> names =
        vectorFiles().stream().map(f -> f.getFileName().toString()).collect(Collectors.toList());
    assertThat(names).anyMatch(n -> n.startsWith("good_"));
    assertThat(names).anyMatch(n -> n.startsWith("fail_"));
    assertThat(names).anyMatch(n -> n.startsWith("pass_"));
  }

  @TestFactory
  Stream<DynamicTest> vectors() throws IOException {
    return vectorFiles().stream()
        .map(
            f ->
                DynamicTest.dynamicTest(
                    f.getFileName().toString(), () -> check(f.getFileName().toString(), read(f))));
  }

  private static JsonNode read(Path f) throws IOException {
    return JSON.readTree(f.toFile());
  }

  private static void check(String name, JsonNode v) throws IOException {
    if (name.startsWith("good_")) {
      checkGood(v);
    } else if (name.startsWith("fail_") || name.startsWith("pass_")) {
      checkOutcome(v);
    } else {
      fail("vector %s is neither good_, fail_ nor pass_", name);
    }
  }

  /** Decoding as a decoder does, with the vector's data key in place of KMS. */
  private static Payload decode(Payload sealed, byte[] dataKey) {
    Envelope env = Envelope.parse(sealed);
    if (env == null) {
      return sealed;
    }
    env.encryptionContext(); // what would be given to KMS
    return env.open(dataKey);
  }

  private static void checkGood(JsonNode v) throws IOException {
    byte[] dataKey = HEX.parseHex(v.get("data_key").asText());
    Payload input = payload(v.get("input"));
    Payload sealed = payload(v.get("sealed"));

    assertThat(asMap(decode(sealed, dataKey))).isEqualTo(asMap(input));

    Map<String, String> context = new TreeMap<>();
    if (v.hasNonNull("encryption_context")) {
      v.get("encryption_context")
          .fields()
          .forEachRemaining(e -> context.put(e.getKey(), e.getValue().asText()));
    }
    SealingKey key =
        new SealingKey(
            dataKey,
            v.get("key_arn").asText(),
            HEX.parseHex(v.get("wrapped_key").asText()),
            context);
    byte[] salt = HEX.parseHex(v.get("salt").asText());
    // An empty plaintext (an empty input payload) is left out of the vector.
    byte[] plaintext = HEX.parseHex(v.path("plaintext").asText(""));
    Payload resealed = key.sealPlaintext(plaintext, salt);
    assertThat(resealed.getMetadataMap()).isEqualTo(sealed.getMetadataMap());
    assertThat(resealed.getData().toByteArray()).isEqualTo(sealed.getData().toByteArray());
    assertThat(key.identity()).isEqualTo(Envelope.parse(sealed).identity);

    // This implementation's own serialization of the input round-trips, and matches the
    // recorded plaintext (map entries sorted by key).
    assertThat(Payload.parseFrom(plaintext)).isEqualTo(input);
    Payload ownSeal = key.seal(input);
    assertThat(asMap(decode(ownSeal, dataKey))).isEqualTo(asMap(input));
  }

  private static void checkOutcome(JsonNode v) throws IOException {
    byte[] dataKey = HEX.parseHex(v.get("data_key").asText());
    Payload sealed = payload(v.get("sealed"));
    String error = v.get("error").asText();
    Class<? extends KmsCodecException> expected;
    switch (error) {
      case "not-encrypted":
        assertThat(decode(sealed, dataKey)).isSameAs(sealed);
        return;
      case "malformed":
        expected = MalformedPayloadException.class;
        break;
      case "authentication":
        expected = AuthenticationFailedException.class;
        break;
      case "unsupported-format":
        expected = UnsupportedFormatException.class;
        break;
      default:
        fail("unknown error kind %s", error);
        return;
    }
    assertThatThrownBy(() -> decode(sealed, dataKey)).isInstanceOf(expected);
  }

  private static Payload payload(JsonNode json) throws InvalidProtocolBufferException {
    Payload.Builder b = Payload.newBuilder();
    JsonFormat.parser().merge(json.toString(), b);
    return b.build();
  }

  /** A payload as metadata map and data, since map order on the wire may differ. */
  private static Map<String, Object> asMap(Payload p) {
    Map<String, Object> m = new TreeMap<>();
    p.getMetadataMap().forEach((k, val) -> m.put("metadata." + k, HEX.formatHex(val.toByteArray())));
    m.put("data", HEX.formatHex(p.getData().toByteArray()));
    return m;
  }
}
