package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/temporal-kms/kmscodec/codec/codecserver/cloudauth"
)

// cloudAPIKeyEnv holds the Temporal Cloud Operations API key itself. It
// has no flag, as the static token has none: a flag's value shows in the
// process list.
const cloudAPIKeyEnv = "KMSCODEC_CLOUD_API_KEY"

// cloudFlags turn on Temporal Cloud sign-in: the Cloud Web UI passes its
// user's access token, the OIDC flags verify it, and the user's
// namespace permissions come from the Cloud Operations API.
type cloudFlags struct {
	enabled  bool
	endpoint string
	keyFile  string
	ttl      time.Duration
}

func (c *cloudFlags) register(fs *pflag.FlagSet) {
	fs.BoolVar(&c.enabled, "cloud-namespace-authz", false, "authorize each request by the signed-in user's namespace permissions in Temporal Cloud (Cloud Operations API); needs --oidc-issuer, --oidc-audience and an API key")
	fs.StringVar(&c.endpoint, "cloud-api-endpoint", cloudauth.DefaultEndpoint, "Temporal Cloud Operations API host:port")
	fs.StringVar(&c.keyFile, "cloud-api-key-file", "", "file holding the API key of a service account that may read users (or set $"+cloudAPIKeyEnv+")")
	fs.DurationVar(&c.ttl, "cloud-authz-ttl", cloudauth.DefaultTTL, "how long a user's Temporal Cloud permissions are used before the API is asked again")
}

// check validates the Cloud flags against the rest of serve's, offline.
// In Cloud mode the identity claim defaults to the Cloud UI's email claim.
func (c *cloudFlags) check(cmd *cobra.Command, f *serveFlags) error {
	if !c.enabled {
		for _, name := range []string{"cloud-api-endpoint", "cloud-api-key-file", "cloud-authz-ttl"} {
			if flagGiven(cmd, name) {
				return usagef(cmd, "--%s needs --cloud-namespace-authz", name)
			}
		}
		return nil
	}
	if f.oidcIssuer == "" || f.oidcAudience == "" {
		return usagef(cmd, "--cloud-namespace-authz verifies the Cloud Web UI's access tokens: it needs --oidc-issuer and --oidc-audience")
	}
	if f.oidcIdentityClaim == "" {
		f.oidcIdentityClaim = cloudauth.EmailClaim
	}
	if c.ttl <= 0 {
		return usagef(cmd, "--cloud-authz-ttl must be positive")
	}
	return nil
}

// authorizer connects to the Cloud Operations API with the key from
// --cloud-api-key-file or the environment. It returns nil when Cloud mode
// is off.
func (c *cloudFlags) authorizer(cmd *cobra.Command, lookupEnv func(string) (string, bool)) (*cloudauth.Authorizer, error) {
	if !c.enabled {
		return nil, nil
	}
	key, _ := lookupEnv(cloudAPIKeyEnv)
	switch {
	case c.keyFile != "" && key != "":
		return nil, usagef(cmd, "set either --cloud-api-key-file or $%s, not both", cloudAPIKeyEnv)
	case c.keyFile != "":
		var err error
		if key, err = cloudauth.APIKeyFromFile(c.keyFile); err != nil {
			return nil, usagef(cmd, "--cloud-api-key-file: %v", err)
		}
	case key == "":
		return nil, usagef(cmd, "--cloud-namespace-authz needs --cloud-api-key-file or $%s", cloudAPIKeyEnv)
	}
	authz, err := cloudauth.New(cloudauth.Options{Endpoint: c.endpoint, APIKey: strings.TrimSpace(key), TTL: c.ttl})
	if err != nil {
		return nil, usagef(cmd, "%v", fmt.Errorf("Temporal Cloud authorization: %w", err))
	}
	return authz, nil
}
