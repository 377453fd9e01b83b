package io.github.temporalkms.kmscodec;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.charset.StandardCharsets;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

class EncryptionContextJsonTest {
  private static String encode(Map<String, String> context) {
    return new String(EncryptionContextJson.encode(context), StandardCharsets.UTF_8);
  }

  private static byte[] utf8(String s) {
    return s.getBytes(StandardCharsets.UTF_8);
  }

  @Test
  void anEmptyContextHasNoEncoding() {
    assertThat(EncryptionContextJson.encode(Map.of())).isNull();
  }

  @Test
  void keysAreSortedByTheirUtf8Bytes() {
    // U+FF21 sorts before U+1F600 in UTF-8 (and code point) order but after it in UTF-16 order.
    assertThat(encode(Map.of("b", "2", "a", "1", "\uD83D\uDE00", "x", "\uFF21", "y", "B", "3")))
        .isEqualTo("{\"B\":\"3\",\"a\":\"1\",\"b\":\"2\",\"\uFF21\":\"y\",\"\uD83D\uDE00\":\"x\"}");
  }

  @Test
  void onlyQuoteBackslashAndControlCharactersAreEscaped() {
    assertThat(encode(Map.of("k", "\"\\\b\t\n\f\r\u0000\u001f/<>&\u007f\u2028\u2029é")))
        .isEqualTo(
            "{\"k\":\"\\\"\\\\\\b\\t\\n\\f\\r\\u0000\\u001f/<>&\u007f\u2028\u2029é\"}");
  }

  @Test
  void aLoneSurrogateCannotBeEncoded() {
    assertThatThrownBy(() -> EncryptionContextJson.encode(Map.of("k", "\uD800")))
        .isInstanceOf(IllegalArgumentException.class);
  }

  @Test
  void decodingReadsTheCanonicalForm() {
    String json = "{\"app\":\"billing\\n\",\"temporal-namespace\":\"payments\"}";
    assertThat(EncryptionContextJson.decode(utf8(json)))
        .containsExactlyInAnyOrderEntriesOf(
            Map.of("app", "billing\n", "temporal-namespace", "payments"));
  }

  @ParameterizedTest
  @ValueSource(
      strings = {
        "{\"b\":\"1\",\"a\":\"2\"}", // unsorted
        "{\"a\": \"1\"}", // white space
        " {\"a\":\"1\"}",
        "{\"a\":\"1\",\"a\":\"1\"}", // duplicate key
        "{\"a\":\"\\u0041\"}", // an escape JSON does not need
        "{\"a\":\"\\/\"}",
        "{\"a\":\"\\u001F\"}", // upper-case hex
        "{\"a\":\"\\u2028\"}",
        "{\"a\":1}", // not a string
        "{\"a\":null}",
        "{}", // no member
        "[\"a\"]", // not an object
        "\"a\"",
        "{\"a\":\"1\"}x", // trailing bytes
        "{\"a\":\"1\"",
        "{\"a\":\"\\ud800\"}", // a lone surrogate
      })
  void decodingRejectsEverythingButTheCanonicalForm(String json) {
    assertThatThrownBy(() -> EncryptionContextJson.decode(utf8(json)))
        .isInstanceOf(MalformedPayloadException.class);
  }

  @Test
  void decodingRejectsInvalidUtf8() {
    byte[] json = {'{', '"', 'a', '"', ':', '"', (byte) 0xff, '"', '}'};
    assertThatThrownBy(() -> EncryptionContextJson.decode(json))
        .isInstanceOf(MalformedPayloadException.class);
  }
}
