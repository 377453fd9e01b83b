# kmscodec build and test entry points. `make test` is what CI runs; it
# builds every tool the tests need into .cache/ (git-ignored) and reuses it.

GO ?= go
CACHE := $(CURDIR)/.cache
TEMPORAL_CLI_VERSION := v1.5.1
TEMPORAL := $(CACHE)/temporal-$(TEMPORAL_CLI_VERSION)/temporal

.PHONY: test check unit vet fmt generate-check bench-smoke bench

## test: every check and test suite, as CI runs it.
test: check unit bench-smoke

## check: formatting, vet, and that generated code is up to date.
check: fmt vet generate-check

fmt:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

generate-check:
	$(GO) generate ./...
	git diff --exit-code -- mocks/

## unit: the library and command tests, with the race detector.
unit:
	$(GO) test -race -count=1 ./...

## bench-smoke: run every benchmark once so they keep compiling and running.
bench-smoke:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

## bench: the benchmarks, in a form benchstat reads.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.out

$(TEMPORAL):
	GOBIN=$(dir $@) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)
