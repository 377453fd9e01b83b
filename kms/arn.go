package kms

import "strings"

// IsKeyARN reports whether id is the ARN of a KMS key
// (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID), as opposed to a bare key
// ID, an alias name or an alias ARN, which have to be resolved through
// KMS before the key ARN is known.
func IsKeyARN(id string) bool {
	rest, ok := strings.CutPrefix(id, "arn:")
	if !ok {
		return false
	}
	partition, rest, ok := strings.Cut(rest, ":")
	if !ok || partition == "" {
		return false
	}
	rest, ok = strings.CutPrefix(rest, "kms:")
	if !ok {
		return false
	}
	_, rest, ok = strings.Cut(rest, ":") // region
	if !ok {
		return false
	}
	_, resource, ok := strings.Cut(rest, ":") // account
	if !ok {
		return false
	}
	keyID, ok := strings.CutPrefix(resource, "key/")
	return ok && keyID != ""
}
