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
