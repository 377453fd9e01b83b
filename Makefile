# kmscodec build and test entry points. `make test` is what CI runs; it
# builds every tool the tests need into .cache/ (git-ignored) and reuses it.

GO ?= go
CACHE := $(CURDIR)/.cache
TEMPORAL_CLI_VERSION := v1.5.1
TEMPORAL := $(CACHE)/temporal-$(TEMPORAL_CLI_VERSION)/temporal
# The headless browser of the Web UI test: a command name or a path.
CHROMIUM ?= chromium

.PHONY: test check unit vet fmt generate-check bench-smoke bench integration demo demo-ui fuzz build temporal-cli chromium

## test: every check and test suite, as CI runs it.
test: check unit bench-smoke java-test integration

## check: formatting, vet, and that generated code is up to date.
check: fmt vet generate-check

fmt:
	@out=$$(gofmt -l . ); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...
	cd integration_test && $(GO) vet ./...

generate-check:
	$(GO) generate ./...
	git diff --exit-code -- mocks/

## unit: the library and command tests, with the race detector.
unit:
	$(GO) test -race -count=1 ./...

## bench-smoke: run every benchmark once so they keep compiling and running,
## the integration ones (cold KMS path, workflows on the dev server) too.
bench-smoke: $(TEMPORAL)
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...
	cd integration_test && TEMPORAL_CLI=$(TEMPORAL) $(GO) test -run '^$$' -bench . -benchtime 1x ./...

## integration: real workflows on the Temporal dev server with keys in the
## local-kms emulator (its own module, so its dependencies stay out of ours),
## and the codec server driven by the Temporal CLI and, in headless Chromium,
## the Web UI. The first run builds the Temporal CLI (several minutes); later
## runs reuse it.
integration: $(TEMPORAL) chromium java-crosslang
	cd integration_test && TEMPORAL_CLI=$(TEMPORAL) CHROMIUM=$(CHROMIUM) $(GO) test -race -count=1 -timeout 20m ./...

## chromium: Debian's chromium for the Web UI test, installed with apt-get
## (through sudo when not root) unless it is there already. CHROMIUM=PATH
## uses another browser instead.
chromium:
	@if command -v '$(CHROMIUM)' >/dev/null 2>&1; then exit 0; fi; \
	if [ '$(CHROMIUM)' != chromium ]; then echo 'CHROMIUM=$(CHROMIUM) does not run' >&2; exit 1; fi; \
	sudo=; if [ "$$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then sudo=sudo; fi; \
	echo "installing chromium with apt-get"; \
	$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium

## demo: one workflow through the codec, showing what the server stores.
demo: $(TEMPORAL)
	cd integration_test && TEMPORAL_CLI=$(TEMPORAL) $(GO) run ./cmd/demo

## demo-ui: the Temporal Web UI decoding through kmscodec serve, with a
## few workflows to look at, until Ctrl-C.
demo-ui: $(TEMPORAL)
	cd integration_test && TEMPORAL_CLI=$(TEMPORAL) $(GO) run ./cmd/demo -ui

## fuzz: each fuzz target for FUZZTIME (make test replays the corpora only).
FUZZTIME ?= 30s
FUZZ_TARGETS := envelope:FuzzOpen envelope:FuzzUnmarshalPayload codec:FuzzDecode codec:FuzzEncodeDecodeRoundTrip \
	codec/codecserver:FuzzServeDecode cmd/kmscodec:FuzzDecodeHistory
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz ./$$pkg $$name for $(FUZZTIME)"; \
		$(GO) test ./$$pkg -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s; \
	done

## build: the kmscodec command into bin/.
build:
	$(GO) build -o bin/kmscodec ./cmd/kmscodec

## temporal-cli: the Temporal CLI (dev server, client and Web UI) into .cache/.
temporal-cli: $(TEMPORAL)

## bench: the benchmarks, in a form benchstat reads (docs/PERFORMANCE.md):
## the library's, then the integration ones against local-kms and the dev
## server. Summarise with
## go run golang.org/x/perf/cmd/benchstat@latest bench.out
bench: $(TEMPORAL)
	$(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee bench.out
	cd integration_test && TEMPORAL_CLI=$(TEMPORAL) $(GO) test -run '^$$' -bench . -benchmem -count 6 ./... | tee -a ../bench.out

$(TEMPORAL):
	GOBIN=$(dir $@) $(GO) install github.com/temporalio/cli/cmd/temporal@$(TEMPORAL_CLI_VERSION)

## --- TypeScript (typescript/: the @temporal-kms/kmscodec npm package) ---
## typescript-deps: npm ci (skipped while node_modules is newer than
## package-lock.json) and the build into typescript/dist/, which holds the
## cross-language program the integration tests run.
## typescript-test: lint, type-check and the package's tests (vectors, KMS
## faults, limits); typescript-lint: lint and type-check only.
## bench-typescript: the codec against raw AES-256-GCM and a static-key codec.
NPM ?= npm
TS_DIR := $(CURDIR)/typescript
.PHONY: typescript-deps typescript-test typescript-lint bench-typescript
typescript-deps: $(TS_DIR)/node_modules/.package-lock.json
	cd $(TS_DIR) && $(NPM) run --silent build
$(TS_DIR)/node_modules/.package-lock.json: $(TS_DIR)/package-lock.json $(TS_DIR)/package.json
	cd $(TS_DIR) && $(NPM) ci --no-audit --no-fund
typescript-lint: typescript-deps
	cd $(TS_DIR) && $(NPM) run --silent typecheck && $(NPM) run --silent lint
typescript-test: typescript-lint
	cd $(TS_DIR) && $(NPM) test
bench-typescript: typescript-deps
	cd $(TS_DIR) && $(NPM) run --silent bench

test: typescript-test
integration: typescript-deps

## ---- Python (python/): package temporal-kmscodec, import kmscodec ----
# A venv under .cache/ with python/ installed editable and the exact tool
# versions of python/requirements-dev.txt; rebuilt when either file changes
# (the stamp's name carries their hash).
PYTHON ?= python3
PYTHON_VENV := $(CACHE)/python-venv
PYTHON_BIN := $(PYTHON_VENV)/bin/python
PYTHON_STAMP := $(PYTHON_VENV)/.deps-$(shell cat python/requirements-dev.txt python/pyproject.toml | sha256sum | cut -c1-16)

.PHONY: python-deps python-lint python-test bench-python

## python-deps: the Python venv in .cache/python-venv.
python-deps: $(PYTHON_STAMP)

$(PYTHON_STAMP):
	rm -f $(PYTHON_VENV)/.deps-*
	$(PYTHON) -m venv $(PYTHON_VENV)
	$(PYTHON_BIN) -m pip install --quiet --disable-pip-version-check -r python/requirements-dev.txt
	$(PYTHON_BIN) -m pip install --quiet --disable-pip-version-check --no-deps -e python
	touch $@

## python-lint: ruff (lint and format) and mypy --strict.
python-lint: python-deps
	cd python && $(PYTHON_BIN) -m ruff check . && $(PYTHON_BIN) -m ruff format --check . && $(PYTHON_BIN) -m mypy

## python-test: lint, type-check, then the unit tests and test vectors.
python-test: python-lint
	cd python && $(PYTHON_BIN) -m pytest -q

## bench-python: the Python codec against raw AES-GCM and a static-key codec.
bench-python: python-deps
	cd python && $(PYTHON_BIN) benchmarks/bench_codec.py

test: python-test
integration: python-deps
integration: export KMSCODEC_PYTHON := $(PYTHON_BIN)
## ---- Java (java/: the library, and the cross-language test program) ----
## Maven keeps its repository in .cache/m2; the JDK is `java`/`javac` on PATH
## (17 or later), or JAVA=/path/to/bin/java for the test program.
MVN ?= mvn
JAVA ?= java
MVN_FLAGS := -B --no-transfer-progress -Dmaven.repo.local=$(CACHE)/m2
JAVA_CROSSLANG := java/crosslang/target

JAVA_DEPS_STAMP := $(CACHE)/m2/.kmscodec-java-deps
JAVA_POMS := java/pom.xml java/kmscodec/pom.xml java/crosslang/pom.xml

.PHONY: java-deps java-lint java-test java-crosslang bench-java

## java-deps: every dependency and plugin of the Java build into .cache/m2
## (again only when a pom.xml changes).
java-deps: $(JAVA_DEPS_STAMP)
$(JAVA_DEPS_STAMP): $(JAVA_POMS)
	cd java && $(MVN) $(MVN_FLAGS) -q dependency:go-offline
	touch $@

## java-lint: compile main and test code with every javac lint warning as an error.
java-lint: java-deps
	cd java && $(MVN) $(MVN_FLAGS) -q -DskipTests test-compile

## java-test: lint, the unit tests (JUnit, every format test vector) and packaging.
java-test: java-deps
	cd java && $(MVN) $(MVN_FLAGS) verify

## java-crosslang: the Java worker/starter that integration_test/java_test.go runs;
## writes its classpath and java command under java/crosslang/target/.
java-crosslang: java-deps
	cd java && $(MVN) $(MVN_FLAGS) -q -DskipTests package
	command -v $(JAVA) > $(JAVA_CROSSLANG)/java.txt

## bench-java: the JMH benchmarks of the Java codec (docs/PERFORMANCE.md, "Java").
BENCH_JAVA_ARGS ?= -f 1 -wi 3 -w 2s -i 5 -r 2s
bench-java: java-deps
	cd java && $(MVN) $(MVN_FLAGS) -q -DskipTests -pl kmscodec test-compile
	cd java/kmscodec && $(JAVA) -cp target/test-classes:target/classes:$$(cat target/test-classpath.txt) \
		org.openjdk.jmh.Main $(BENCH_JAVA_ARGS) 'io.github.temporalkms.kmscodec.CodecBenchmark'
