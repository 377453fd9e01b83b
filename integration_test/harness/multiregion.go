package harness

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nsmithuk/local-kms/src/cmk"
)

// SeedMultiRegionKey gives each emulator of byRegion (region name to the
// emulator standing for that region's KMS) the replica of one new
// multi-Region key, and returns the replicas' ARNs by region.
//
// local-kms has no multi-Region keys: CreateKey ignores MultiRegion, it
// has no ReplicateKey, and it builds the ARNs of the keys it creates
// from one process-wide region. But its key store can be seeded with a
// key of any ARN and given key material, which is what a replica is: the
// same "mrk-" key ID and key material under an ARN that differs only by
// region. A data key that one emulator wraps therefore unwraps in
// another with the real emulator's cryptography, as between replicas in
// AWS, while each emulator counts its own calls.
func SeedMultiRegionKey(t testing.TB, byRegion map[string]*KMS) map[string]string {
	t.Helper()
	var id [16]byte
	var material [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		t.Fatal(err)
	}
	if _, err := rand.Read(material[:]); err != nil {
		t.Fatal(err)
	}
	keyID := "mrk-" + hex.EncodeToString(id[:])
	regions := make([]string, 0, len(byRegion))
	for region := range byRegion {
		regions = append(regions, region)
	}
	sort.Strings(regions)
	arns := make(map[string]string, len(byRegion))
	for _, region := range regions {
		arn := fmt.Sprintf("arn:aws:kms:%s:%s:key/%s", region, AccountID, keyID)
		key := cmk.NewAesKey(cmk.KeyMetadata{
			Arn:          arn,
			KeyId:        keyID,
			AWSAccountId: AccountID,
			CreationDate: time.Now().Unix(),
			Enabled:      true,
			KeyManager:   "CUSTOMER",
			KeyState:     cmk.KeyStateEnabled,
			Origin:       cmk.KeyOriginAwsKms,
			Description:  new(string),
		}, defaultKeyPolicy, cmk.KeyOriginExternal) // External: no material of its own
		key.BackingKeys = [][32]byte{material}
		if err := byRegion[region].db.SaveKey(key); err != nil {
			t.Fatalf("seed the %s replica: %v", region, err)
		}
		arns[region] = arn
	}
	return arns
}

// defaultKeyPolicy is the policy seeded keys carry; the emulator does not
// enforce policies, but DescribeKey and GetKeyPolicy expect one.
var defaultKeyPolicy = strings.TrimSpace(fmt.Sprintf(`
{"Version":"2012-10-17","Id":"key-default-1","Statement":[{"Sid":"Enable IAM User Permissions","Effect":"Allow","Principal":{"AWS":"arn:aws:iam::%s:root"},"Action":"kms:*","Resource":"*"}]}`, AccountID))
