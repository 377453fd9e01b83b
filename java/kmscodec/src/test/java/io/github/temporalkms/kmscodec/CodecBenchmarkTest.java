package io.github.temporalkms.kmscodec;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

/** Each benchmark runs once, so they keep compiling and measuring what they claim. */
class CodecBenchmarkTest {
  @Test
  void everyBenchmarkRunsAndRoundTrips() throws Exception {
    CodecBenchmark b = new CodecBenchmark();
    b.size = 1024;
    b.setUp();
    assertThat(b.kmsDecode()).isEqualTo(b.staticKeyDecode());
    assertThat(b.codec().decode(b.kmsEncode())).isEqualTo(b.kmsDecode());
    assertThat(b.staticKeyDecode()).isEqualTo(b.kmsDecode());
    assertThat(b.staticKeyEncode()).hasSize(1);
    assertThat(b.rawEncrypt()).hasSize(1024 + 16);
    assertThat(b.rawDecrypt()).hasSize(1024);
  }
}
