package kms

import "testing"

func TestIsKeyARN(t *testing.T) {
	tests := []struct {
		id   string
		want bool
	}{
		{"arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab", true},
		{"arn:aws-us-gov:kms:us-gov-west-1:111122223333:key/mrk-1234", true},
		{"arn:aws-cn:kms:cn-north-1:111122223333:key/k", true},
		{"arn:aws:kms:us-east-1:111122223333:alias/temporal", false},
		{"alias/temporal", false},
		{"1234abcd-12ab-34cd-56ef-1234567890ab", false},
		{"arn:aws:kms:us-east-1:111122223333:key/", false},
		{"arn:aws:s3:us-east-1:111122223333:key/k", false},
		{"arn::kms:us-east-1:111122223333:key/k", false},
		{"arn:aws:kms:us-east-1:key/k", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := IsKeyARN(tt.id); got != tt.want {
			t.Errorf("IsKeyARN(%q) = %v, want %v", tt.id, got, tt.want)
		}
	}
}

func TestParseKeyARNTakesAnARNApartAndBackTogether(t *testing.T) {
	const s = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab"
	a, ok := ParseKeyARN(s)
	want := KeyARN{Partition: "aws", Region: "us-west-2", Account: "111122223333", KeyID: "mrk-1234abcd12ab34cd56ef1234567890ab"}
	if !ok || a != want {
		t.Fatalf("ParseKeyARN = %+v, %v; want %+v", a, ok, want)
	}
	if a.String() != s {
		t.Errorf("String() = %q, want %q", a.String(), s)
	}
	if !a.MultiRegion() {
		t.Error("an mrk- key is not reported multi-Region")
	}
	if got := a.InRegion("eu-west-1").String(); got != "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab" {
		t.Errorf("InRegion = %q", got)
	}
}

func TestSameKeyARNMatchesMultiRegionReplicasOnly(t *testing.T) {
	const (
		mrkEast = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234"
		mrkWest = "arn:aws:kms:us-west-2:111122223333:key/mrk-1234"
		srkEast = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
		srkWest = "arn:aws:kms:us-west-2:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
	)
	tests := []struct {
		name string
		a, b string
		want bool
	}{
		{"identical multi-Region key", mrkEast, mrkEast, true},
		{"replica in another region", mrkEast, mrkWest, true},
		{"identical single-Region key", srkEast, srkEast, true},
		{"single-Region key ID in another region", srkEast, srkWest, false},
		{"another account", mrkEast, "arn:aws:kms:us-west-2:444455556666:key/mrk-1234", false},
		{"another partition", mrkEast, "arn:aws-cn:kms:cn-north-1:111122223333:key/mrk-1234", false},
		{"another multi-Region key", mrkEast, "arn:aws:kms:us-west-2:111122223333:key/mrk-5678", false},
		{"an alias ARN", mrkEast, "arn:aws:kms:us-west-2:111122223333:alias/mrk-1234", false},
		{"not ARNs, identical", "alias/temporal", "alias/temporal", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SameKeyARN(tt.a, tt.b); got != tt.want {
				t.Errorf("SameKeyARN(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
			}
			if got := SameKeyARN(tt.b, tt.a); got != tt.want {
				t.Errorf("SameKeyARN is not symmetric for %q, %q", tt.b, tt.a)
			}
		})
	}
}
