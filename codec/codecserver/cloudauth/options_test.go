package cloudauth_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cloudservice "go.temporal.io/cloud-sdk/api/cloudservice/v1"

	"github.com/temporal-kms/kmscodec/codec/codecserver/cloudauth"
)

func TestNewRefusesInvalidOptions(t *testing.T) {
	const key = "secret-key-value-42"
	cases := []struct {
		name    string
		opts    cloudauth.Options
		message string
	}{
		{"no API key", cloudauth.Options{}, "APIKey is required"},
		{"API key with a newline", cloudauth.Options{APIKey: key + "\n"}, "whitespace"},
		{"endpoint without port", cloudauth.Options{APIKey: key, Endpoint: "saas-api.tmprl.cloud"}, "not host:port"},
		{"plaintext to a remote endpoint", cloudauth.Options{APIKey: key, Endpoint: "saas-api.tmprl.cloud:443", Insecure: true}, "only allowed to a loopback"},
		{"plaintext to the default endpoint", cloudauth.Options{APIKey: key, Insecure: true}, "only allowed to a loopback"},
		{"plaintext to a private address", cloudauth.Options{APIKey: key, Endpoint: "10.0.0.7:7233", Insecure: true}, "only allowed to a loopback"},
		{"negative TTL", cloudauth.Options{APIKey: key, TTL: -1}, "TTL"},
		{"negative Timeout", cloudauth.Options{APIKey: key, Timeout: -1}, "Timeout"},
		{"negative MaxEntries", cloudauth.Options{APIKey: key, MaxEntries: -1}, "MaxEntries"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, err := cloudauth.New(c.opts)
			if err == nil {
				a.Close()
				t.Fatal("New accepted the options")
			}
			if !strings.Contains(err.Error(), c.message) {
				t.Errorf("error %q does not mention %q", err, c.message)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("error %q contains the API key", err)
			}
		})
	}
}

func TestNewAcceptsPlaintextToLoopbackOnly(t *testing.T) {
	for _, endpoint := range []string{"127.0.0.1:7243", "[::1]:7243", "localhost:7243"} {
		a, err := cloudauth.New(cloudauth.Options{APIKey: "k", Endpoint: endpoint, Insecure: true})
		if err != nil {
			t.Errorf("%s: %v", endpoint, err)
			continue
		}
		a.Close()
	}
}

func TestNewRefusesClientWithConnectionSettings(t *testing.T) {
	client := cloudservice.NewCloudServiceClient(nil) // never called
	_, err := cloudauth.New(cloudauth.Options{Client: client, APIKey: "k"})
	if err == nil || !strings.Contains(err.Error(), "leave Endpoint, APIKey and Insecure empty") {
		t.Fatalf("got %v", err)
	}
}

func TestAPIKeyFromFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	key, err := cloudauth.APIKeyFromFile(write("key", "  the-key-value\n"))
	if err != nil || key != "the-key-value" {
		t.Errorf("got %q, %v; want the key trimmed", key, err)
	}
	for name, content := range map[string]string{"empty": "", "blank": " \n\t\n"} {
		if _, err := cloudauth.APIKeyFromFile(write(name, content)); err == nil || !strings.Contains(err.Error(), "is empty") {
			t.Errorf("%s file: %v, want an error saying it is empty", name, err)
		}
	}
	if _, err := cloudauth.APIKeyFromFile(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
	if _, err := cloudauth.APIKeyFromFile(write("huge", strings.Repeat("k", 5000))); err == nil || strings.Contains(err.Error(), "kkkk") {
		t.Errorf("oversized file: %v, want an error without its content", err)
	}
}

func TestOptionsAndAuthorizerNeverPrintTheAPIKey(t *testing.T) {
	const key = "secret-key-value-42"
	opts := cloudauth.Options{APIKey: key}
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("starting", "cloud", opts)
	a, err := cloudauth.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	for _, s := range []string{fmt.Sprint(opts), fmt.Sprintf("%+v", opts), fmt.Sprintf("%+v", a), fmt.Sprintf("%#v", a), logged.String()} {
		if strings.Contains(s, key) {
			t.Errorf("printed %q", s)
		}
	}
	if !strings.Contains(fmt.Sprint(opts), "APIKey: set") {
		t.Errorf("String() = %q, want it to say the key is set", opts)
	}
}
