package kms

import "strings"

// IsKeyARN reports whether id is the ARN of a KMS key
// (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID), as opposed to a bare key
// ID, an alias name or an alias ARN, which have to be resolved through
// KMS before the key ARN is known.
func IsKeyARN(id string) bool {
	parts := strings.SplitN(id, ":", 6)
	return len(parts) == 6 &&
		parts[0] == "arn" && parts[1] != "" && parts[2] == "kms" &&
		strings.HasPrefix(parts[5], "key/") && len(parts[5]) > len("key/")
}
