package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	commonpb "go.temporal.io/api/common/v1"

	"github.com/temporal-kms/kmscodec/codec"
	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// The keys of the fake KMS. The committed fixtures are encrypted under
// them, and the fake derives its key material from the ARN, so the
// fixtures decrypt in every run.
const (
	oldKeyARN = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-0000-4000-8000-000000000001"
	newKeyARN = "arn:aws:kms:us-east-1:111122223333:key/0a1b2c3d-0000-4000-8000-000000000002"
)

var updateFixtures = flag.Bool("update-fixtures", false,
	"re-encrypt testdata/fixtures/history.json from history.plain.json before running the scripts")

func TestMain(m *testing.M) {
	// Scripts run the command as a separate process: testscript re-runs
	// this test binary as "kmscodec", entering main.
	testscript.Main(m, map[string]func(){"kmscodec": main})
}

// TestScript runs testdata/script/*.txtar: the command as a user types
// it, against a fake KMS served over HTTP (reached with --kms-endpoint).
func TestScript(t *testing.T) {
	if *updateFixtures {
		writeFixtures(t)
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup:               setupScript,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exits":    cmdExits,
			"waitfile": cmdWaitFile,
			"codecreq": cmdCodecRequest,
			"kmscalls": cmdKMSCalls,
			"gencert":  cmdGenCert,
			"kmsfail":  cmdKMSFail,
		},
	})
}

type fakeKey struct{}

// setupScript starts a fake KMS for the script, points the AWS SDK at
// nothing real, and puts the fixtures in the work directory.
func setupScript(env *testscript.Env) error {
	fake := newFakeKMS(oldKeyARN, newKeyARN)
	fake.SetAlias("alias/temporal", newKeyARN)
	srv := httptest.NewServer(fake.Handler())
	env.Defer(srv.Close)
	env.Values[fakeKey{}] = fake

	for k, v := range map[string]string{
		"KMS_ENDPOINT": srv.URL,
		"OLD_KEY":      oldKeyARN,
		"NEW_KEY":      newKeyARN,
		// Credentials that sign requests to the fake; nothing real is
		// read or reached.
		"AWS_ACCESS_KEY_ID":           "AKIDFAKEFAKEFAKEFAKE",
		"AWS_SECRET_ACCESS_KEY":       "fake-secret",
		"AWS_REGION":                  "us-east-1",
		"AWS_EC2_METADATA_DISABLED":   "true",
		"AWS_CONFIG_FILE":             filepath.Join(env.WorkDir, "no-aws-config"),
		"AWS_SHARED_CREDENTIALS_FILE": filepath.Join(env.WorkDir, "no-aws-credentials"),
	} {
		env.Setenv(k, v)
	}
	entries, err := os.ReadDir(filepath.Join("testdata", "fixtures"))
	if err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("testdata", "fixtures", e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(env.WorkDir, e.Name()), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// cmdExits runs a command and checks its exit status:
//
//	exits 2 kmscodec serve
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits STATUS COMMAND [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exits: status %q is not a number", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) {
			ts.Fatalf("exits: %v", err)
		}
		got = exitErr.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit status %d, want %d", got, want)
	}
}

// cmdWaitFile waits up to 10 seconds for a file to appear:
//
//	waitfile ready.json
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	ts.Fatalf("%s did not appear within 10s", args[0])
}

// cmdCodecRequest sends one request to the server whose --ready-file is
// ready.json and prints "status N" and the response body:
//
//	codecreq [-token T] [-H Name:Value]... [-o FILE] [-cacert FILE] [-metrics] METHOD PATH [BODYFILE]
//
// With -o, the body goes to FILE instead. -cacert trusts FILE for TLS;
// -metrics sends the request to the metrics listener.
func cmdCodecRequest(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("codecreq does not support !")
	}
	var token, outFile, caFile string
	var headers [][2]string
	metrics := false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		if args[0] == "-metrics" {
			metrics = true
			args = args[1:]
			continue
		}
		if len(args) < 2 {
			ts.Fatalf("codecreq: %s needs a value", args[0])
		}
		switch args[0] {
		case "-token":
			token = args[1]
		case "-o":
			outFile = args[1]
		case "-cacert":
			caFile = args[1]
		case "-H":
			name, value, ok := strings.Cut(args[1], ":")
			if !ok {
				ts.Fatalf("codecreq: -H %q is not Name:Value", args[1])
			}
			headers = append(headers, [2]string{name, strings.TrimSpace(value)})
		default:
			ts.Fatalf("codecreq: unknown option %s", args[0])
		}
		args = args[2:]
	}
	if len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: codecreq [-token T] [-H Name:Value]... [-o FILE] METHOD PATH [BODYFILE]")
	}
	var ready readyInfo
	ts.Check(json.Unmarshal([]byte(ts.ReadFile("ready.json")), &ready))
	var body io.Reader
	if len(args) == 3 {
		body = strings.NewReader(ts.ReadFile(args[2]))
	}
	base := ready.URL
	if metrics {
		base = strings.TrimSuffix(ready.MetricsURL, "/metrics")
	}
	req, err := http.NewRequest(args[0], base+args[1], body)
	ts.Check(err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for _, h := range headers {
		req.Header.Set(h[0], h[1])
	}
	client := &http.Client{Timeout: 10 * time.Second}
	if caFile != "" {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(ts.ReadFile(caFile))) {
			ts.Fatalf("codecreq: %s holds no certificate", caFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	}
	resp, err := client.Do(req)
	ts.Check(err)
	defer resp.Body.Close()
	respBody, err := io.ReadAll(resp.Body)
	ts.Check(err)
	fmt.Fprintf(ts.Stdout(), "status %d\n", resp.StatusCode)
	if outFile != "" {
		ts.Check(os.WriteFile(ts.MkAbs(outFile), respBody, 0o644))
		return
	}
	ts.Stdout().Write(respBody)
}

// cmdKMSCalls checks how many calls of an operation the script's fake KMS
// has had:
//
//	kmscalls Decrypt 1
func cmdKMSCalls(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: kmscalls OPERATION COUNT")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	fake := ts.Value(fakeKey{}).(*kmstest.KMS)
	if got := fake.Calls(args[0]); got != want {
		ts.Fatalf("KMS %s calls: %d, want %d", args[0], got, want)
	}
}

// cmdKMSFail makes every call of an operation on the script's fake KMS
// fail with an AWS error code, or succeed again with "ok":
//
//	kmsfail Decrypt AccessDeniedException
func cmdKMSFail(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: kmsfail OPERATION CODE|ok")
	}
	fake := ts.Value(fakeKey{}).(*kmstest.KMS)
	if args[1] == "ok" {
		fake.FailWith(args[0], nil)
		return
	}
	fake.FailWith(args[0], kmstest.Error(args[1], "injected by the test"))
}

// cmdGenCert writes a self-signed certificate for 127.0.0.1 and its key:
//
//	gencert server.crt server.key
func cmdGenCert(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: gencert CERTFILE KEYFILE")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ts.Check(err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "kmscodec test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	ts.Check(err)
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	ts.Check(err)
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644))
	ts.Check(os.WriteFile(ts.MkAbs(args[1]), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
}

// writeFixtures encrypts the payloads of history.plain.json into
// history.json (and its input into input.json) as a worker
// in namespace "default" would, in a history that switched keys: the
// workflow input under the old key, later payloads under the new one,
// and the memo left unencrypted, as written by a client without the
// codec.
func writeFixtures(t *testing.T) {
	fake := newFakeKMS(oldKeyARN, newKeyARN)
	newCodec := func(key string) *codec.Codec {
		c, err := codec.New(codec.Options{KMS: fake, KeyID: key, Namespace: "default"})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	oldCodec, currentCodec := newCodec(oldKeyARN), newCodec(newKeyARN)

	f, err := os.Open(filepath.Join("testdata", "fixtures", "history.plain.json"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := parseDocument(f)
	if err != nil {
		t.Fatal(err)
	}
	sites := findPayloads(doc)
	for i, site := range sites {
		if strings.Contains(site.path(), ".memo.") {
			continue
		}
		c := currentCodec
		if i == 0 {
			c = oldCodec
		}
		p, err := site.toPayload()
		if err != nil {
			t.Fatal(err)
		}
		out, err := c.Encode([]*commonpb.Payload{p})
		if err != nil {
			t.Fatal(err)
		}
		if err := site.replace(out[0]); err != nil {
			t.Fatal(err)
		}
	}
	b, err := marshalDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "fixtures", "history.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// input.json is the workflow input alone, as a codec request body.
	input := &object{members: []member{{key: "payloads", value: []any{sites[0].obj}}}}
	if b, err = marshalDocument(input); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "fixtures", "input.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
