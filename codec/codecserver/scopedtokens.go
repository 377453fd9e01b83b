package codecserver

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// HashToken returns the line prefix under which a scoped-token file
// names token: "sha256:" and the hex SHA-256 of the token.
func HashToken(token string) string {
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// scopedToken is one line of a scoped-token file.
type scopedToken struct {
	sum        [sha256.Size]byte
	namespaces map[string]bool // nil: every namespace
}

// parseScopedTokens reads lines of "sha256:<64 hex> <ns>[,<ns>...]" or
// "sha256:<64 hex> *"; blank lines and lines starting with # are
// skipped. Errors name the line, never its content: it is a secret's
// hash, and a mistyped line may be a secret itself.
func parseScopedTokens(b []byte) ([]scopedToken, error) {
	var out []scopedToken
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 2 {
			return nil, fmt.Errorf("line %d: want \"sha256:<64 hex digits> <namespace>[,<namespace>...]\"", n)
		}
		hexSum, ok := strings.CutPrefix(fields[0], "sha256:")
		raw, err := hex.DecodeString(hexSum)
		if !ok || err != nil || len(raw) != sha256.Size {
			return nil, fmt.Errorf("line %d: the token hash is not sha256: and 64 hex digits (kmscodec hash-token prints it)", n)
		}
		t := scopedToken{}
		copy(t.sum[:], raw)
		if fields[1] != "*" {
			t.namespaces = map[string]bool{}
			for _, ns := range strings.Split(fields[1], ",") {
				if !namespacePattern.MatchString(ns) {
					return nil, fmt.Errorf("line %d: %q is not a namespace name or *", n, ns)
				}
				t.namespaces[ns] = true
			}
		}
		out = append(out, t)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// scopedTokens holds the tokens of a file, and reads the file again when
// its modification time or size changes, looking at most once per
// checkEvery. A file that no longer parses leaves the last good set in
// force and is logged.
type scopedTokens struct {
	path       string
	checkEvery time.Duration
	log        *slog.Logger

	mu        sync.Mutex
	tokens    []scopedToken
	modTime   time.Time
	size      int64
	lastCheck time.Time
}

func loadScopedTokens(path string, checkEvery time.Duration, log *slog.Logger) (*scopedTokens, error) {
	s := &scopedTokens{path: path, checkEvery: checkEvery, log: log}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("scoped-token file: %w", err)
	}
	if err := s.load(fi); err != nil {
		return nil, fmt.Errorf("scoped-token file %s: %w", path, err)
	}
	s.lastCheck = time.Now()
	return s, nil
}

func (s *scopedTokens) load(fi os.FileInfo) error {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return err
	}
	tokens, err := parseScopedTokens(b)
	if err != nil {
		return err
	}
	s.tokens, s.modTime, s.size = tokens, fi.ModTime(), fi.Size()
	return nil
}

// current returns the tokens in force, reloading the file if it changed.
func (s *scopedTokens) current() []scopedToken {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now := time.Now(); now.Sub(s.lastCheck) >= s.checkEvery {
		s.lastCheck = now
		fi, err := os.Stat(s.path)
		switch {
		case err != nil:
			s.log.Error("scoped-token file unreadable; keeping the tokens last loaded", slog.String("path", s.path), slog.String("error", err.Error()))
		case !fi.ModTime().Equal(s.modTime) || fi.Size() != s.size:
			if err := s.load(fi); err != nil {
				// Remember the bad version, so it is logged once.
				s.modTime, s.size = fi.ModTime(), fi.Size()
				s.log.Error("scoped-token file invalid; keeping the tokens last loaded", slog.String("path", s.path), slog.String("error", err.Error()))
			} else {
				s.log.Info("scoped-token file reloaded", slog.String("path", s.path), slog.Int("tokens", len(s.tokens)))
			}
		}
	}
	return s.tokens
}

// match returns the principal of the token whose hash is sum, or nil.
// Every entry is compared, in constant time.
func (s *scopedTokens) match(sum [sha256.Size]byte) *principal {
	var found *scopedToken
	tokens := s.current()
	for i := range tokens {
		if subtle.ConstantTimeCompare(sum[:], tokens[i].sum[:]) == 1 {
			found = &tokens[i]
		}
	}
	if found == nil {
		return nil
	}
	p := &principal{subject: "scoped-token:" + hex.EncodeToString(sum[:4])}
	if found.namespaces == nil {
		p.any = true
		return p
	}
	p.roles = map[string]roleSet{}
	for ns := range found.namespaces {
		p.roles[ns] = roleSet{read: true, write: true}
	}
	return p
}
