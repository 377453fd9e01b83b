package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awskms "github.com/aws/aws-sdk-go-v2/service/kms"
	smithy "github.com/aws/smithy-go"

	kmsapi "github.com/temporal-kms/kmscodec/kms"
)

// kmsHealth passes KMS calls on and watches their outcomes, for /readyz:
// the server is not ready before KMS has answered once, nor after the
// last maxFailures calls all failed. A call fails when KMS could not be
// reached or failed on its side (a network error, a timeout, a 5xx,
// throttling); an answer refusing the call (AccessDeniedException,
// InvalidCiphertextException...) shows KMS is there. While not ready, a
// prober asks KMS about a key every few seconds, since a server that is
// not ready gets no traffic whose calls would show KMS is back.
type kmsHealth struct {
	kmsapi.API
	maxFailures int
	probeKey    string
	log         *slog.Logger

	mu       sync.Mutex
	answered bool // KMS answered at least once
	failures int  // calls failed in a row
	lastErr  error
}

func newKMSHealth(api kmsapi.API, maxFailures int, probeKey string, log *slog.Logger) *kmsHealth {
	return &kmsHealth{API: api, maxFailures: maxFailures, probeKey: probeKey, log: log}
}

// probeKeyID is the key the prober describes: the key encrypted under,
// else the first key decrypted with.
func probeKeyID(k *kmsFlags) string {
	if k.keyID != "" {
		return k.keyID
	}
	if len(k.decryptKeyIDs) > 0 {
		return k.decryptKeyIDs[0]
	}
	return ""
}

func (h *kmsHealth) observe(err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err == nil || kmsAnswered(err) {
		h.answered, h.failures, h.lastErr = true, 0, nil
		return
	}
	h.failures++
	h.lastErr = err
}

// kmsAnswered reports whether err is KMS's own answer refusing a call,
// rather than KMS unreachable or failing.
func kmsAnswered(err error) bool {
	var apiErr smithy.APIError
	if !errors.As(err, &apiErr) || apiErr.ErrorFault() == smithy.FaultServer {
		return false
	}
	switch apiErr.ErrorCode() {
	case "ThrottlingException", "KMSInternalException", "DependencyTimeoutException", "KeyUnavailableException":
		return false
	}
	return true
}

// ready is the codec server's Options.Ready.
func (h *kmsHealth) ready() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case h.failures >= h.maxFailures:
		return fmt.Errorf("the last %d KMS calls failed", h.failures)
	case !h.answered:
		return errors.New("KMS has not answered yet")
	}
	return nil
}

// probe describes probeKey now and then every interval while not ready,
// until ctx is done.
func (h *kmsHealth) probe(ctx context.Context, interval time.Duration) {
	if h.probeKey == "" {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if h.ready() != nil {
			callCtx, cancel := context.WithTimeout(ctx, interval)
			_, err := h.DescribeKey(callCtx, &awskms.DescribeKeyInput{KeyId: aws.String(h.probeKey)})
			cancel()
			if err != nil && ctx.Err() == nil && !kmsAnswered(err) {
				h.log.Warn("KMS is not answering; not ready", slog.String("error", err.Error()))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (h *kmsHealth) GenerateDataKey(ctx context.Context, in *awskms.GenerateDataKeyInput, opts ...func(*awskms.Options)) (*awskms.GenerateDataKeyOutput, error) {
	out, err := h.API.GenerateDataKey(ctx, in, opts...)
	h.observe(err)
	return out, err
}

func (h *kmsHealth) Decrypt(ctx context.Context, in *awskms.DecryptInput, opts ...func(*awskms.Options)) (*awskms.DecryptOutput, error) {
	out, err := h.API.Decrypt(ctx, in, opts...)
	h.observe(err)
	return out, err
}

func (h *kmsHealth) DescribeKey(ctx context.Context, in *awskms.DescribeKeyInput, opts ...func(*awskms.Options)) (*awskms.DescribeKeyOutput, error) {
	out, err := h.API.DescribeKey(ctx, in, opts...)
	h.observe(err)
	return out, err
}
