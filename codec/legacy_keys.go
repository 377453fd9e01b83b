package codec

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
)

// maxLegacyKeyFileSize bounds a legacy key file: a thousand keys fit in
// well under it.
const maxLegacyKeyFileSize = 1 << 20

// LoadLegacyKeys reads the static keys of a legacy codec from a JSON file
// holding one object, {"<key id>": "<base64 of a 32-byte key>", ...}, for
// NewLegacyStaticKeyDecoder. Outside Windows it refuses a file that users
// other than its owner and group may read or write (mode o+rwx must be
// clear): the file holds keys that decrypt every legacy payload. Errors
// name the file and the key ID at fault, never key material.
func LoadLegacyKeys(path string) (map[string][]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("kmscodec: legacy key file: %w", err)
	}
	defer f.Close()
	// The mode is checked on the file that was opened, so it cannot be
	// swapped between the check and the read.
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("kmscodec: legacy key file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("kmscodec: legacy key file %s is not a regular file", path)
	}
	if perm := info.Mode().Perm(); runtime.GOOS != "windows" && perm&0o007 != 0 {
		return nil, fmt.Errorf("kmscodec: legacy key file %s has mode %04o: other users may access it; chmod o-rwx it (0600 or 0640)", path, perm)
	}
	raw, err := io.ReadAll(io.LimitReader(f, maxLegacyKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("kmscodec: legacy key file %s: %w", path, err)
	}
	if len(raw) > maxLegacyKeyFileSize {
		return nil, fmt.Errorf("kmscodec: legacy key file %s is larger than %d bytes", path, maxLegacyKeyFileSize)
	}
	var encoded map[string]string
	if err := json.Unmarshal(raw, &encoded); err != nil {
		// json's errors quote no input beyond a character or a type.
		return nil, fmt.Errorf("kmscodec: legacy key file %s is not a JSON object of key IDs to base64 keys: %w", path, err)
	}
	if len(encoded) == 0 {
		return nil, fmt.Errorf("kmscodec: legacy key file %s holds no keys", path)
	}
	keys := make(map[string][]byte, len(encoded))
	for id, b64 := range encoded {
		key, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			return nil, fmt.Errorf("kmscodec: legacy key file %s: key %q is not standard base64", path, id)
		}
		if len(key) != LegacyKeySize {
			return nil, fmt.Errorf("kmscodec: legacy key file %s: key %q is %d bytes, want %d (AES-256)", path, id, len(key), LegacyKeySize)
		}
		keys[id] = key
	}
	return keys, nil
}
