package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certCheckInterval is the least time between two looks at whether the
// certificate files changed.
const certCheckInterval = 5 * time.Second

// certReloader serves a TLS certificate read from files, and reads them
// again when either file's modification time or size changes, looking at
// most once per checkEvery, when a connection is set up. A pair that does
// not load (a renewal caught halfway, say) leaves the last good one
// served, and is tried again at the next look.
type certReloader struct {
	certFile, keyFile string
	checkEvery        time.Duration
	log               *slog.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string // modification times and sizes of the loaded files
	lastCheck time.Time
}

func newCertReloader(certFile, keyFile string, checkEvery time.Duration, log *slog.Logger) (*certReloader, error) {
	r := &certReloader{certFile: certFile, keyFile: keyFile, checkEvery: checkEvery, log: log}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	r.cert, r.stamp, r.lastCheck = &cert, stamp, time.Now()
	return r, nil
}

func (r *certReloader) fileStamp() (string, error) {
	var stamp string
	for _, name := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", err
		}
		stamp += fmt.Sprintf("%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return stamp, nil
}

// getCertificate is tls.Config.GetCertificate.
func (r *certReloader) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.lastCheck) >= r.checkEvery {
		r.lastCheck = now
		r.reload()
	}
	return r.cert, nil
}

func (r *certReloader) reload() {
	stamp, err := r.fileStamp()
	if err != nil {
		r.log.Error("TLS certificate files unreadable; serving the certificate last loaded", slog.String("error", err.Error()))
		return
	}
	if stamp == r.stamp {
		return
	}
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		// The stamp stays old, so the next look tries again: the other
		// file of the pair may still be on its way.
		r.log.Error("TLS certificate and key do not load; serving the certificate last loaded", slog.String("error", err.Error()))
		return
	}
	r.cert, r.stamp = &cert, stamp
	r.log.Info("TLS certificate reloaded", slog.String("cert", r.certFile))
}
