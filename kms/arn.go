package kms

import "strings"

// multiRegionPrefix starts the key ID of every multi-Region key, and of
// no single-Region key.
const multiRegionPrefix = "mrk-"

// KeyARN is a KMS key ARN taken apart:
// arn:Partition:kms:Region:Account:key/KeyID.
type KeyARN struct {
	Partition, Region, Account, KeyID string
}

// ParseKeyARN takes a key ARN apart; ok is false for anything that is not
// a key ARN (see IsKeyARN).
func ParseKeyARN(id string) (arn KeyARN, ok bool) {
	rest, ok := strings.CutPrefix(id, "arn:")
	if !ok {
		return KeyARN{}, false
	}
	parts := strings.SplitN(rest, ":", 5) // partition, service, region, account, resource
	if len(parts) != 5 || parts[0] == "" || parts[1] != "kms" {
		return KeyARN{}, false
	}
	keyID, ok := strings.CutPrefix(parts[4], "key/")
	if !ok || keyID == "" {
		return KeyARN{}, false
	}
	return KeyARN{Partition: parts[0], Region: parts[2], Account: parts[3], KeyID: keyID}, true
}

// IsKeyARN reports whether id is the ARN of a KMS key
// (arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID), as opposed to a bare key
// ID, an alias name or an alias ARN, which have to be resolved through
// KMS before the key ARN is known.
func IsKeyARN(id string) bool {
	_, ok := ParseKeyARN(id)
	return ok
}

// String returns the ARN.
func (a KeyARN) String() string {
	return "arn:" + a.Partition + ":kms:" + a.Region + ":" + a.Account + ":key/" + a.KeyID
}

// MultiRegion reports whether a is a multi-Region key: one of a set of
// replicas in several regions that share key material, so that what one
// replica wraps any other unwraps. Their key IDs start with "mrk-".
func (a KeyARN) MultiRegion() bool {
	return strings.HasPrefix(a.KeyID, multiRegionPrefix)
}

// InRegion returns the ARN of a's replica in region: a with only the
// region changed. It is meaningful for a multi-Region key only.
func (a KeyARN) InRegion(region string) KeyARN {
	a.Region = region
	return a
}

// SameKey reports whether a and b name the same key material: they are
// equal, or both are multi-Region keys that differ at most by region
// (replicas of one another). A single-Region key matches only itself:
// two single-Region keys with the same key ID in two regions are two
// unrelated keys.
func (a KeyARN) SameKey(b KeyARN) bool {
	if a == b {
		return true
	}
	return a.MultiRegion() && b.MultiRegion() && a.InRegion("") == b.InRegion("")
}

// SameKeyARN is SameKey on two ARNs as strings; anything that is not a
// key ARN matches only an identical string.
func SameKeyARN(a, b string) bool {
	if a == b {
		return true
	}
	x, okA := ParseKeyARN(a)
	y, okB := ParseKeyARN(b)
	return okA && okB && x.SameKey(y)
}
