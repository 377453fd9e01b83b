package io.github.temporalkms.kmscodec;

import com.fasterxml.jackson.core.JsonFactory;
import com.fasterxml.jackson.core.JsonParser;
import com.fasterxml.jackson.core.JsonProcessingException;
import com.fasterxml.jackson.core.JsonToken;
import com.fasterxml.jackson.core.StreamReadFeature;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.Collections;
import java.util.Comparator;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;

/**
 * The encryption-context metadata value: the canonical JSON encoding of a map of strings (see
 * docs/FORMAT.md). Encoders write exactly the canonical bytes; decoders parse and re-encode, and
 * reject any other spelling, which catches duplicate keys, white space, unsorted keys and other
 * escapes.
 */
final class EncryptionContextJson {
  private static final JsonFactory JSON =
      JsonFactory.builder().enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION).build();

  /** Orders strings by their UTF-8 bytes, which is code point order. */
  static final Comparator<String> UTF8_ORDER = EncryptionContextJson::compareCodePoints;

  private static final char[] HEX = "0123456789abcdef".toCharArray();

  private EncryptionContextJson() {}

  /** A copy of {@code context} in canonical key order, unmodifiable. */
  static Map<String, String> sorted(Map<String, String> context) {
    TreeMap<String, String> sorted = new TreeMap<>(UTF8_ORDER);
    sorted.putAll(context);
    return Collections.unmodifiableMap(sorted);
  }

  /**
   * The canonical JSON of {@code context}, or {@code null} for an empty context (which is left out
   * of the metadata).
   *
   * @throws IllegalArgumentException if a key or value is not valid Unicode (a lone surrogate)
   */
  static byte[] encode(Map<String, String> context) {
    if (context.isEmpty()) {
      return null;
    }
    StringBuilder json = new StringBuilder(64);
    json.append('{');
    boolean first = true;
    for (Map.Entry<String, String> e : sorted(context).entrySet()) {
      if (!first) {
        json.append(',');
      }
      first = false;
      appendString(json, e.getKey());
      json.append(':');
      appendString(json, e.getValue());
    }
    json.append('}');
    return json.toString().getBytes(StandardCharsets.UTF_8);
  }

  /**
   * Parses the metadata value {@code bytes}: a JSON object of at least one member whose values
   * are strings, written canonically.
   *
   * @throws MalformedPayloadException otherwise
   */
  static Map<String, String> decode(byte[] bytes) {
    Map<String, String> context = new LinkedHashMap<>();
    try (JsonParser parser = JSON.createParser(bytes)) {
      if (parser.nextToken() != JsonToken.START_OBJECT) {
        throw notObjectOfStrings();
      }
      for (JsonToken t = parser.nextToken(); t != JsonToken.END_OBJECT; t = parser.nextToken()) {
        String key = parser.currentName();
        if (t != JsonToken.FIELD_NAME || parser.nextToken() != JsonToken.VALUE_STRING) {
          throw notObjectOfStrings();
        }
        context.put(key, parser.getText());
      }
      if (parser.nextToken() != null) {
        throw notObjectOfStrings();
      }
    } catch (JsonProcessingException e) {
      throw notObjectOfStrings();
    } catch (IOException e) {
      throw new IllegalStateException("reading JSON from memory failed", e);
    }
    byte[] canonical;
    try {
      canonical = encode(context);
    } catch (IllegalArgumentException e) {
      throw new MalformedPayloadException(Envelope.CONTEXT_FIELD + " is not valid Unicode");
    }
    if (canonical == null) {
      throw new MalformedPayloadException(Envelope.CONTEXT_FIELD + " is an empty object");
    }
    if (!Arrays.equals(canonical, bytes)) {
      throw new MalformedPayloadException(
          Envelope.CONTEXT_FIELD + " is not in canonical form (sorted keys, no white space,"
              + " minimal escapes)");
    }
    return context;
  }

  private static MalformedPayloadException notObjectOfStrings() {
    return new MalformedPayloadException(
        Envelope.CONTEXT_FIELD + " is not a JSON object of strings");
  }

  private static void appendString(StringBuilder json, String s) {
    json.append('"');
    for (int i = 0; i < s.length(); i++) {
      char c = s.charAt(i);
      switch (c) {
        case '"':
          json.append("\\\"");
          break;
        case '\\':
          json.append("\\\\");
          break;
        case '\b':
          json.append("\\b");
          break;
        case '\t':
          json.append("\\t");
          break;
        case '\n':
          json.append("\\n");
          break;
        case '\f':
          json.append("\\f");
          break;
        case '\r':
          json.append("\\r");
          break;
        default:
          if (c < 0x20) {
            json.append("\\u00").append(HEX[c >> 4]).append(HEX[c & 0xf]);
          } else if (Character.isHighSurrogate(c)
              && i + 1 < s.length()
              && Character.isLowSurrogate(s.charAt(i + 1))) {
            json.append(c).append(s.charAt(++i));
          } else if (Character.isSurrogate(c)) {
            throw new IllegalArgumentException("encryption context holds a lone surrogate");
          } else {
            json.append(c);
          }
      }
    }
    json.append('"');
  }

  private static int compareCodePoints(String a, String b) {
    int i = 0;
    int j = 0;
    while (i < a.length() && j < b.length()) {
      int ca = a.codePointAt(i);
      int cb = b.codePointAt(j);
      if (ca != cb) {
        return Integer.compare(ca, cb);
      }
      i += Character.charCount(ca);
      j += Character.charCount(cb);
    }
    return Integer.compare(a.length() - i, b.length() - j);
  }

}
