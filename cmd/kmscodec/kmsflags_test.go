package main

import (
	"context"
	"errors"
	"net/http/httptest"
	"testing"

	"github.com/spf13/cobra"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// parseKMSFlags registers the KMS flags of decode on a command, parses
// args and validates them, as decode and serve do.
func parseKMSFlags(t *testing.T, args ...string) (*kmsFlags, *cobra.Command, error) {
	t.Helper()
	k := &kmsFlags{}
	cmd := &cobra.Command{Use: "decode"}
	k.register(cmd.Flags(), false)
	if err := cmd.Flags().Parse(args); err != nil {
		return nil, nil, err
	}
	return k, cmd, k.validate(cmd, false)
}

func TestRegionalKMSFlagsSendEachRegionsDecryptToItsEndpoint(t *testing.T) {
	east, west := kmstest.NewInRegion("us-east-1"), kmstest.NewInRegion("us-west-2")
	primary := east.CreateMultiRegionKey()
	replica := east.ReplicateKey(primary, west)
	single := east.CreateKey()
	eastSrv, westSrv := httptest.NewServer(east.Handler()), httptest.NewServer(west.Handler())
	t.Cleanup(eastSrv.Close)
	t.Cleanup(westSrv.Close)
	writer := func(key string) *codec.Codec {
		c, err := codec.New(codec.Options{KMS: east, KeyID: key, Namespace: "ns"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	underMRK, err := writer(primary).Encode(plain(3))
	if err != nil {
		t.Fatal(err)
	}
	underSingle, err := writer(single).Encode(plain(1))
	if err != nil {
		t.Fatal(err)
	}

	setFakeAWSEnv(t)
	t.Setenv("AWS_REGION", "us-west-2")
	k, _, err := parseKMSFlags(t, "--kms-endpoint", westSrv.URL, "--key-id", replica, "--decrypt-key-id", single,
		"--regional-kms", "us-east-1="+eastSrv.URL, "--region-preference", "us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	api, err := k.client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	opts := k.codecOptions(api, false)
	if opts.Region != "us-west-2" || len(opts.RegionalKMS) != 1 || opts.RegionalKMS["us-east-1"] == nil || len(opts.RegionPreference) != 1 {
		t.Fatalf("codec options: Region %q, RegionalKMS %v, RegionPreference %v", opts.Region, opts.RegionalKMS, opts.RegionPreference)
	}
	c, err := codec.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	eastBefore := east.TotalCalls()
	if _, err := c.Decode(underMRK); err != nil {
		t.Fatalf("decode the multi-Region key's payloads: %v", err)
	}
	if east.TotalCalls() != eastBefore || west.Calls("Decrypt") != 1 {
		t.Errorf("multi-Region key: %d calls at us-east-1, %d Decrypt at us-west-2; want 0 and 1", east.TotalCalls()-eastBefore, west.Calls("Decrypt"))
	}
	if _, err := c.Decode(underSingle); err != nil {
		t.Fatalf("decode the single-Region key's payload: %v", err)
	}
	if east.Calls("Decrypt") != 1 || west.Calls("Decrypt") != 1 {
		t.Errorf("single-Region key: %d Decrypt at us-east-1, %d at us-west-2; want it at us-east-1", east.Calls("Decrypt"), west.Calls("Decrypt")-1)
	}
}

func TestRegionalKMSFlagsAreValidated(t *testing.T) {
	base := []string{"--key-id", "arn:aws:kms:us-west-2:111122223333:key/mrk-1"}
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"no region", []string{"--regional-kms", "=http://127.0.0.1:1"}},
		{"not a region", []string{"--regional-kms", "https://kms.us-east-1.amazonaws.com"}},
		{"endpoint not a URL", []string{"--regional-kms", "us-east-1=kms.example"}},
		{"region twice", []string{"--regional-kms", "us-east-1", "--regional-kms", "us-east-1=http://127.0.0.1:1"}},
		{"preference not a region", []string{"--region-preference", "https://kms.us-east-1.amazonaws.com"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := parseKMSFlags(t, append(base, tt.args...)...)
			var usage *usageError
			if !errors.As(err, &usage) {
				t.Fatalf("got %v, want a usage error", err)
			}
		})
	}
}

func TestRegionalKMSMustNotNameTheMainClientsRegion(t *testing.T) {
	setFakeAWSEnv(t)
	k, _, err := parseKMSFlags(t, "--key-id", "alias/temporal", "--region", "us-west-2", "--regional-kms", "us-west-2")
	if err != nil {
		t.Fatal(err)
	}
	var usage *usageError
	if _, err := k.client(context.Background()); !errors.As(err, &usage) {
		t.Fatalf("got %v, want a usage error", err)
	}
}

func TestWithoutRegionalFlagsTheCodecKnowsOnlyItsOwnRegion(t *testing.T) {
	setFakeAWSEnv(t)
	k, _, err := parseKMSFlags(t, "--key-id", "alias/temporal")
	if err != nil {
		t.Fatal(err)
	}
	api, err := k.client(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	opts := k.codecOptions(api, false)
	if opts.Region != "us-east-1" || len(opts.RegionalKMS) != 0 || len(opts.RegionPreference) != 0 {
		t.Fatalf("codec options: Region %q, RegionalKMS %v, RegionPreference %v", opts.Region, opts.RegionalKMS, opts.RegionPreference)
	}
}
