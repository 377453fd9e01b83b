package main

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/stscreds"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/temporal-kms/kmscodec/codec"
	kmsapi "github.com/temporal-kms/kmscodec/kms"
)

// kmsFlags are the flags that say how to reach KMS and which keys to use,
// shared by serve and decode.
type kmsFlags struct {
	region        string
	profile       string
	assumeRoleARN string
	endpoint      string
	timeout       time.Duration

	keyID         string
	decryptKeyIDs []string
	cacheSize     int
	cacheTTL      time.Duration

	// Only serve encrypts, so only serve has these.
	encryptionContext map[string]string
	dataKeyMaxAge     time.Duration
	maxPayloadsPerKey int64
	maxBytesPerKey    int64
}

func (k *kmsFlags) register(fs *pflag.FlagSet, encrypt bool) {
	fs.StringVar(&k.region, "region", "", "AWS region of the KMS keys (default: the AWS SDK's, e.g. $AWS_REGION)")
	fs.StringVar(&k.profile, "profile", "", "AWS shared config profile (default: the AWS SDK's, e.g. $AWS_PROFILE)")
	fs.StringVar(&k.assumeRoleARN, "assume-role-arn", "", "IAM role to assume for KMS calls")
	fs.StringVar(&k.endpoint, "kms-endpoint", "", "KMS endpoint URL, overriding the AWS SDK's (for a VPC endpoint or a KMS emulator)")
	fs.DurationVar(&k.timeout, "kms-timeout", codec.DefaultKMSTimeout, "bound on each KMS call, retries included")
	keyHelp := "KMS key that decryption is allowed under: key ARN, key ID or alias (an alias is followed to its key)"
	if encrypt {
		keyHelp = "KMS key that /encode encrypts under, also allowed for decryption: key ARN, key ID or alias"
	}
	fs.StringVar(&k.keyID, "key-id", "", keyHelp)
	fs.StringSliceVar(&k.decryptKeyIDs, "decrypt-key-id", nil, "further key ARN whose payloads may be decrypted, such as a key rotated away from (repeatable)")
	fs.IntVar(&k.cacheSize, "decrypt-cache-size", codec.DefaultDecryptCacheSize, "unwrapped data keys kept in memory")
	fs.DurationVar(&k.cacheTTL, "decrypt-cache-ttl", codec.DefaultDecryptCacheTTL, "how long an unwrapped data key is kept")
	if encrypt {
		fs.StringToStringVar(&k.encryptionContext, "encryption-context", nil, "KMS encryption context added to new data keys, as key=value pairs (the namespace is added by itself)")
		fs.DurationVar(&k.dataKeyMaxAge, "data-key-max-age", codec.DefaultDataKeyMaxAge, "how long a generated data key encrypts new payloads")
		fs.Int64Var(&k.maxPayloadsPerKey, "max-payloads-per-data-key", codec.DefaultMaxPayloadsPerDataKey, "payloads one data key encrypts before a new one is generated")
		fs.Int64Var(&k.maxBytesPerKey, "max-bytes-per-data-key", 0, "payload bytes one data key encrypts (0: no bound)")
	}
}

// validate checks what can be checked without AWS.
func (k *kmsFlags) validate(cmd *cobra.Command, encrypt bool) error {
	if encrypt && k.keyID == "" {
		return usagef(cmd, "--enable-encode needs --key-id, the key to encrypt under")
	}
	if k.keyID == "" && len(k.decryptKeyIDs) == 0 {
		return usagef(cmd, "no KMS key allowed: set --key-id or --decrypt-key-id (see 'kmscodec keys' for the keys a history uses)")
	}
	for _, id := range k.decryptKeyIDs {
		if !kmsapi.IsKeyARN(id) {
			return usagef(cmd, "--decrypt-key-id %q is not a key ARN (arn:aws:kms:REGION:ACCOUNT:key/ID); aliases move, so only ARNs are accepted", id)
		}
	}
	if k.endpoint != "" {
		u, err := url.Parse(k.endpoint)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return usagef(cmd, "--kms-endpoint %q is not an http(s) URL", k.endpoint)
		}
	}
	switch {
	case k.timeout <= 0:
		return usagef(cmd, "--kms-timeout must be positive")
	case k.cacheSize <= 0:
		return usagef(cmd, "--decrypt-cache-size must be positive")
	case k.cacheTTL <= 0:
		return usagef(cmd, "--decrypt-cache-ttl must be positive")
	case k.dataKeyMaxAge < 0, k.maxPayloadsPerKey < 0, k.maxBytesPerKey < 0:
		return usagef(cmd, "data key limits must not be negative")
	}
	return nil
}

// client builds the KMS client from the AWS SDK's default configuration
// chain (environment, shared config and credentials files, SSO, web
// identity, container and instance roles), narrowed by the flags.
func (k *kmsFlags) client(ctx context.Context) (kmsapi.API, error) {
	var opts []func(*config.LoadOptions) error
	if k.region != "" {
		opts = append(opts, config.WithRegion(k.region))
	}
	if k.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(k.profile))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return nil, &usageError{err: fmt.Errorf("no AWS region: set --region or $AWS_REGION")}
	}
	if k.assumeRoleARN != "" {
		provider := stscreds.NewAssumeRoleProvider(sts.NewFromConfig(cfg), k.assumeRoleARN, func(o *stscreds.AssumeRoleOptions) {
			o.RoleSessionName = "kmscodec"
		})
		cfg.Credentials = aws.NewCredentialsCache(provider)
	}
	return awskms.NewFromConfig(cfg, func(o *awskms.Options) {
		if k.endpoint != "" {
			o.BaseEndpoint = aws.String(k.endpoint)
		}
	}), nil
}

// codecOptions maps the flags onto codec.Options. Encryption is disabled
// unless encrypt: a server that only decodes never generates data keys,
// so its IAM role needs kms:Decrypt alone.
func (k *kmsFlags) codecOptions(api kmsapi.API, encrypt bool) codec.Options {
	return codec.Options{
		KMS:                   api,
		KeyID:                 k.keyID,
		DecryptKeyIDs:         k.decryptKeyIDs,
		EncryptionContext:     k.encryptionContext,
		DataKeyMaxAge:         k.dataKeyMaxAge,
		MaxPayloadsPerDataKey: k.maxPayloadsPerKey,
		MaxBytesPerDataKey:    k.maxBytesPerKey,
		DecryptCacheSize:      k.cacheSize,
		DecryptCacheTTL:       k.cacheTTL,
		KMSTimeout:            k.timeout,
		DisableEncryption:     !encrypt,
	}
}
