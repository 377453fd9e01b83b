package io.github.temporalkms.kmscodec;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class KeyArnsTest {
  private static final String MRK_EAST =
      "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
  private static final String MRK_WEST =
      "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
  private static final String SINGLE_EAST =
      "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";
  private static final String SINGLE_WEST =
      "arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab";

  @Test
  void parsesTheFivePartsAndPrintsTheArnBack() {
    KeyArns.KeyArn arn = KeyArns.parse(MRK_EAST).orElseThrow();
    assertThat(arn.partition()).isEqualTo("aws");
    assertThat(arn.region()).isEqualTo("us-east-1");
    assertThat(arn.account()).isEqualTo("111122223333");
    assertThat(arn.keyId()).isEqualTo("mrk-1234abcd12ab34cd56ef1234567890ab");
    assertThat(arn.isMultiRegion()).isTrue();
    assertThat(arn.inRegion("eu-west-1").toString()).isEqualTo(MRK_WEST);
  }

  @Test
  void aliasesAndBareKeyIdsAreNotKeyArns() {
    assertThat(KeyArns.parse("alias/temporal")).isEmpty();
    assertThat(KeyArns.parse("arn:aws:kms:us-east-1:111122223333:alias/temporal")).isEmpty();
    assertThat(KeyArns.parse("mrk-1234abcd12ab34cd56ef1234567890ab")).isEmpty();
    assertThat(KeyArns.parse("arn:aws:kms:us-east-1:111122223333:key/")).isEmpty();
  }

  @Test
  void replicasOfAMultiRegionKeyMatch() {
    assertThat(KeyArns.sameKey(MRK_EAST, MRK_WEST)).isTrue();
  }

  @Test
  void singleRegionKeysMatchOnlyTheirExactArn() {
    assertThat(KeyArns.sameKey(SINGLE_EAST, SINGLE_EAST)).isTrue();
    assertThat(KeyArns.sameKey(SINGLE_EAST, SINGLE_WEST)).isFalse();
  }

  @Test
  void multiRegionKeysOfAnotherAccountOrPartitionDoNotMatch() {
    assertThat(KeyArns.sameKey(MRK_EAST, MRK_WEST.replace("111122223333", "444455556666")))
        .isFalse();
    assertThat(KeyArns.sameKey(MRK_EAST, MRK_WEST.replace("arn:aws:", "arn:aws-cn:"))).isFalse();
  }

  @Test
  void nonArnsMatchOnlyTheIdenticalString() {
    assertThat(KeyArns.sameKey("alias/temporal", "alias/temporal")).isTrue();
    assertThat(KeyArns.sameKey("mrk-1234abcd12ab34cd56ef1234567890ab", MRK_EAST)).isFalse();
  }
}
