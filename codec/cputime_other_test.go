//go:build !unix

package codec_test

import "time"

// cpuTime is not measured here; benchmarks leave out cpu-ns/op.
func cpuTime() time.Duration { return 0 }
