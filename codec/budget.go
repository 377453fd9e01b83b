package codec

import (
	"errors"

	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/envelope"
)

// DataKeysToFetch reports how many KMS Decrypt calls Decode would make
// for payloads: the distinct data keys among them that are not in the
// decryption cache. A server uses it to refuse, before any KMS call, a
// request that would cost more than it allows one caller.
//
// It checks the batch as Decode does before its first KMS call, and
// returns the error Decode would return for a payload that is malformed,
// under a key that is not allowed, (with Options.RequireSameNamespace) of
// another namespace, or (with Options.RejectUnencrypted) not encrypted.
// The count is one call per data key: a key another request fetches
// meanwhile, or one KMS recently refused, costs nothing, and with
// Options.Region a multi-Region key whose own replica fails transiently
// costs a further call per replica tried (see Options.RegionPreference).
func (c *Codec) DataKeysToFetch(payloads []*commonpb.Payload) (int, error) {
	missing := map[string]bool{}
	for i, p := range payloads {
		env, err := envelope.Parse(p)
		if errors.Is(err, envelope.ErrNotEncrypted) {
			if c.opts.RejectUnencrypted {
				return 0, c.fail("decode", i, len(payloads), ErrUnencryptedPayload)
			}
			continue
		}
		if err == nil {
			err = c.checkAllowed(env.KeyARN)
		}
		if err == nil && c.opts.RequireSameNamespace {
			err = c.checkNamespace(env)
		}
		if err != nil {
			return 0, c.fail("decode", i, len(payloads), err)
		}
		id := env.KeyIdentity()
		if _, cached := c.decrypt.Cached(id); !cached {
			missing[id] = true
		}
	}
	return len(missing), nil
}
