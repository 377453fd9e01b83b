package codecserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// signingAlgs are the JWS algorithms accepted: asymmetric ones only, so
// that no shared secret can sign a token.
var signingAlgs = map[string]bool{
	"RS256": true, "RS384": true, "RS512": true,
	"PS256": true, "PS384": true, "PS512": true,
	"ES256": true, "ES384": true, "ES512": true,
	"EdDSA": true,
}

var signingAlgList = func() []jose.SignatureAlgorithm {
	var out []jose.SignatureAlgorithm
	for a := range signingAlgs {
		out = append(out, jose.SignatureAlgorithm(a))
	}
	return out
}()

// keySet is an oidc.KeySet that fetches an issuer's JWKS at most once per
// minRefresh. go-oidc's own RemoteKeySet fetches again whenever a
// signature fails to verify, so that every forged token costs a request
// to the issuer; here a token naming a key already held never causes a
// fetch, and one naming an unknown key does only when the last fetch is
// older than minRefresh. Concurrent fetches are merged into one.
type keySet struct {
	url        string
	client     *http.Client
	minRefresh time.Duration

	mu        sync.RWMutex
	keys      []jose.JSONWebKey
	lastFetch time.Time // zero before the first fetch
	fetches   singleflight.Group
}

func newKeySet(url string, client *http.Client, minRefresh time.Duration) *keySet {
	return &keySet{url: url, client: client, minRefresh: minRefresh}
}

// errUnknownKey is a token signed by a key the issuer does not publish.
var errUnknownKey = errors.New("the token's signing key is not in the issuer's key set")

// VerifySignature implements oidc.KeySet.
func (k *keySet) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, signingAlgList)
	if err != nil {
		return nil, fmt.Errorf("malformed token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("the token has not exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, known := k.lookup(kid)
	if !known {
		if keys, err = k.refresh(ctx, kid); err != nil {
			return nil, err
		}
	}
	for _, key := range keys {
		if payload, err := jws.Verify(&key); err == nil {
			return payload, nil
		}
	}
	return nil, errors.New("the token's signature does not verify")
}

// lookup returns the keys a token naming kid may be signed with, and
// whether any is held. A token without kid may be signed by any key.
func (k *keySet) lookup(kid string) ([]jose.JSONWebKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	var out []jose.JSONWebKey
	for _, key := range k.keys {
		if kid == "" || key.KeyID == kid {
			out = append(out, key)
		}
	}
	return out, len(out) > 0
}

// refresh fetches the keys if the last fetch is older than minRefresh,
// and returns those a token naming kid may be signed with.
func (k *keySet) refresh(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	_, err, _ := k.fetches.Do("", func() (any, error) {
		k.mu.RLock()
		recent := !k.lastFetch.IsZero() && time.Since(k.lastFetch) < k.minRefresh
		k.mu.RUnlock()
		if recent {
			return nil, nil
		}
		// The fetch serves every waiting request, so no single request's
		// cancellation may stop it; the client's timeout bounds it.
		keys, err := k.fetch(context.WithoutCancel(ctx))
		k.mu.Lock()
		defer k.mu.Unlock()
		k.lastFetch = time.Now() // a failed fetch waits its turn too
		if err != nil {
			return nil, err
		}
		k.keys = keys
		return nil, nil
	})
	if err != nil {
		return nil, err
	}
	keys, known := k.lookup(kid)
	if !known {
		return nil, errUnknownKey
	}
	return keys, nil
}

// maxJWKSBytes bounds the key set document read.
const maxJWKSBytes = 1 << 20

func (k *keySet) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetching the JWKS: status %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes))
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("the JWKS is not a JSON Web Key Set: %w", err)
	}
	// Keys this package cannot use (another key type, encryption keys)
	// are skipped rather than fail the whole set, as issuers publish them
	// beside their signing keys.
	var keys []jose.JSONWebKey
	for _, raw := range set.Keys {
		var key jose.JSONWebKey
		if json.Unmarshal(raw, &key) != nil || !key.Valid() || !key.IsPublic() || key.Use == "enc" {
			continue
		}
		keys = append(keys, key)
	}
	return keys, nil
}

// mayFetch reports whether verifying raw could wait for a fetch of the
// keys: its header names no key held. A token that does not parse
// cannot, and fails at once.
func (k *keySet) mayFetch(raw string) bool {
	header, _, ok := strings.Cut(raw, ".")
	if !ok {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return false
	}
	var h struct {
		KeyID string `json:"kid"`
	}
	if json.Unmarshal(b, &h) != nil {
		return false
	}
	_, known := k.lookup(h.KeyID)
	return !known
}
