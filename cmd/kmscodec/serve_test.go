package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/temporal-kms/kmscodec/kms/kmstest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 with serial
// number serial, and its key, with modification time mtime.
func writeCert(t *testing.T, certFile, keyFile string, serial int64, mtime time.Time) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "kmscodec test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		certFile: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyFile:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	} {
		if err := os.WriteFile(name, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(name, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
}

// servedSerial connects anew to addr and returns the serial number of
// the certificate the server presents.
func servedSerial(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // the test reads the certificate, trusts nothing
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// TestCertificateReload: a certificate renewed on disk is served on new
// connections without a restart; a pair that does not load leaves the
// last good certificate served.
func TestCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	start := time.Now().Add(-time.Hour)
	writeCert(t, certFile, keyFile, 1, start)
	logs := &strings.Builder{}
	certs, err := newCertReloader(certFile, keyFile, 10*time.Millisecond, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: certs.getCertificate})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), ErrorLog: slog.NewLogLogger(slog.New(slog.NewTextHandler(io.Discard, nil)).Handler(), slog.LevelError)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	addr := ln.Addr().String()

	if got := servedSerial(t, addr); got != 1 {
		t.Fatalf("serial %d served, want 1", got)
	}
	writeCert(t, certFile, keyFile, 2, start.Add(time.Minute))
	time.Sleep(20 * time.Millisecond)
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after the files were replaced: serial %d served, want 2", got)
	}

	// A new certificate without its key (a renewal caught halfway).
	other := filepath.Join(dir, "other")
	writeCert(t, certFile, other, 3, start.Add(2*time.Minute))
	time.Sleep(20 * time.Millisecond)
	if got := servedSerial(t, addr); got != 2 {
		t.Fatalf("after a mismatched pair: serial %d served, want the last good 2", got)
	}
	if !strings.Contains(logs.String(), "serving the certificate last loaded") {
		t.Errorf("the mismatched pair is not logged:\n%s", logs)
	}
}

// TestKMSHealth: not ready before KMS has answered, ready once it has
// (a refusal is an answer), not ready after --ready-kms-failures calls in
// a row failed, and ready again once the prober reaches KMS.
func TestKMSHealth(t *testing.T) {
	fake := newFakeKMS(newKeyARN)
	h := newKMSHealth(fake, 3, newKeyARN, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := h.ready(); err == nil {
		t.Fatal("ready before any KMS call")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go h.probe(ctx, 10*time.Millisecond)
	waitReady := func(want bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); (h.ready() == nil) != want; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("ready is %v after 5s, want %v", h.ready(), want)
			}
		}
	}
	waitReady(true)

	// KMS refusing is an answer: still ready.
	h.observe(kmstest.Error("AccessDeniedException", "not allowed"))
	if err := h.ready(); err != nil {
		t.Fatalf("not ready after KMS refused a call: %v", err)
	}
	// KMS unreachable, three times in a row; the prober keeps failing too.
	fake.FailWith("DescribeKey", errors.New("dial tcp: connection refused"))
	for range 3 {
		h.observe(errors.New("dial tcp: connection refused"))
	}
	if err := h.ready(); err == nil || !strings.Contains(err.Error(), "KMS calls failed") {
		t.Fatalf("ready after 3 failures in a row: %v", err)
	}
	fake.FailWith("DescribeKey", nil)
	waitReady(true)
}
