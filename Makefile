# hostos: build, configure and update balenaOS-style images.
GO      ?= go
OUT     ?= out
ORACLE_DIR ?= .cache/balena-oracle
SHARED  ?= ../shared
POKY_DIR ?=

.PHONY: all hostos demo deps oracle test vet bench check-layer clean e2e fuzz

all: hostos

hostos:
	$(GO) build -o $(OUT)/hostos ./cmd/hostos

deps:
	scripts/install-deps.sh

# The main job on the embedded default: a complete balenaOS-layout image, then what inspect sees in it.
demo: deps hostos
	$(OUT)/hostos build -o $(OUT)/demo.img
	$(OUT)/hostos inspect $(OUT)/demo.img

# balena's own npm tools, the independent reader of what hostos writes.
oracle:
	@if [ -x $(SHARED)/oracle/install.sh ] || [ -f $(SHARED)/oracle/install.sh ]; then \
		bash $(SHARED)/oracle/install.sh $(ORACLE_DIR) >/dev/null; \
	else echo "no $(SHARED)/oracle: interop tests will skip" >&2; fi

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed" >&2; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags e2e ./tests/e2e

# Every test: unit, codec, end-to-end build and interop with balena's tools, then the QEMU boots.
test: deps oracle vet
	HOSTOS_ORACLE=$$( [ -f $(ORACLE_DIR)/balena-oracle.js ] && cd $(ORACLE_DIR) && pwd )/balena-oracle.js \
		$(GO) test -count=1 -timeout 40m ./...
	FUZZTIME=$(CI_FUZZTIME) scripts/fuzz.sh
	$(MAKE) e2e

# Every Go fuzz target for FUZZTIME each (default 60s); make test runs them for CI_FUZZTIME. Failing inputs land
# in the package's testdata/fuzz and are replayed by go test from then on.
CI_FUZZTIME ?= 4s
fuzz:
	scripts/fuzz.sh

# Speed and memory against the baselines the issues name: genimage for build, balena-device-init for
# configure, dd of the uncompressed filesystem for update, docker load into a fresh dockerd for preload.
bench: deps hostos oracle
	scripts/bench-build.sh
	HOSTOS=$(OUT)/hostos HOSTOS_ORACLE=$$(cd $(ORACLE_DIR) && pwd)/balena-oracle.js scripts/bench-configure.sh
	HOSTOS=$(OUT)/hostos scripts/bench-update.sh
	HOSTOS=$(OUT)/hostos scripts/bench-flash.sh
	HOSTOS=$(OUT)/hostos scripts/bench-preload.sh

# Parse layers/meta-hostos with the bitbake of a poky checkout (scarthgap or newer): make check-layer POKY_DIR=...
check-layer:
	scripts/check-layer.sh $(POKY_DIR)

clean:
	rm -rf $(OUT)

# The QEMU end-to-end test (tests/e2e): firmware, GRUB, a Debian kernel and hostos, booted and updated.
e2e:
	scripts/install-deps.sh e2e
	$(GO) test -tags e2e -count=1 -timeout 30m -v ./tests/e2e
