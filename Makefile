# hostos: build, configure and update balenaOS-style images.
GO      ?= go
OUT     ?= out
ORACLE_DIR ?= .cache/balena-oracle
SHARED  ?= ../shared
POKY_DIR ?=

.PHONY: all hostos demo deps oracle test vet vet-cross bench check-layer clean e2e fuzz dist

# What hostos version prints: set here for make hostos and make dist (go build alone takes the VCS stamp).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)

# Release platforms, GOOS/GOARCH[/GOARM]. VET_PLATFORMS are cross-compiled and vetted by make vet, so
# CI fails when one stops compiling (linux/amd64 is make vet's own).
PLATFORMS     ?= linux/amd64 linux/arm64 linux/arm/6 linux/arm/7 linux/386 darwin/amd64 darwin/arm64 windows/amd64
VET_PLATFORMS ?= linux/arm64 linux/arm/6 linux/386 darwin/amd64 darwin/arm64 windows/amd64

all: hostos

# Static (no cgo), as make dist builds it: no dynamic loader or libc start-up, which is a tenth of the
# page faults of `hostos --version` on a machine where each costs tens of microseconds.
hostos:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(OUT)/hostos ./cmd/hostos

# Release archives for every platform, byte-identical for the same commit and Go: -trimpath, the VCS stamp
# off (the commit is in LDFLAGS), sorted entries, fixed owners and mtimes; $(OUT)/dist/SHA256SUMS lists them.
dist:
	@rm -rf $(OUT)/dist && mkdir -p $(OUT)/dist
	@set -e; for p in $(PLATFORMS); do \
		os=$$(echo $$p | cut -d/ -f1) arch=$$(echo $$p | cut -d/ -f2) arm=$$(echo $$p | cut -d/ -f3); \
		name=hostos-$(VERSION)-$$os-$$arch$${arm:+v$$arm}; exe=hostos; [ $$os = windows ] && exe=hostos.exe; \
		mkdir -p $(OUT)/dist/$$name; \
		CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) build -trimpath -buildvcs=false \
			-ldflags "-s -w $(LDFLAGS)" -o $(OUT)/dist/$$name/$$exe ./cmd/hostos; \
		cp README.md $(OUT)/dist/$$name/; \
		touch -d @$(SOURCE_DATE_EPOCH) $(OUT)/dist/$$name $(OUT)/dist/$$name/*; \
		if [ $$os = windows ]; then \
			(cd $(OUT)/dist && TZ=UTC zip -qX -r $$name.zip $$name); \
		else \
			tar -C $(OUT)/dist --sort=name --mtime=@$(SOURCE_DATE_EPOCH) --owner=0 --group=0 --numeric-owner \
				-cf - $$name | gzip -n9 >$(OUT)/dist/$$name.tar.gz; \
		fi; \
		rm -rf $(OUT)/dist/$$name; echo "dist: $$name"; \
	done; cd $(OUT)/dist && sha256sum hostos-* >SHA256SUMS && cat SHA256SUMS

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
	$(MAKE) --no-print-directory vet-cross

# go vet (which type-checks every package and its tests) for each of VET_PLATFORMS. Outside Linux the
# end-to-end packages under tests/ (real e2fsprogs, dockerd, QEMU, mounts) are left out: they run on Linux.
vet-cross:
	@set -e; for p in $(VET_PLATFORMS); do \
		os=$$(echo $$p | cut -d/ -f1) arch=$$(echo $$p | cut -d/ -f2) arm=$$(echo $$p | cut -d/ -f3); \
		pkgs=./...; [ $$os = linux ] || pkgs=$$(GOOS=$$os GOARCH=$$arch $(GO) list ./... | grep -v '/tests$$\|/tests/'); \
		echo "vet $$p"; GOOS=$$os GOARCH=$$arch GOARM=$$arm $(GO) vet $$pkgs; \
	done

# Every test: unit, codec, end-to-end build and interop with balena's tools, then the QEMU boots.
# The end-to-end package (./tests, mostly waiting on e2fsprogs, dockerd and the disk) runs beside the others
# rather than after them: on two cores that is minutes off the run.
test: deps oracle vet
	@oracle=$$( [ -f $(ORACLE_DIR)/balena-oracle.js ] && cd $(ORACLE_DIR) && pwd )/balena-oracle.js; \
		HOSTOS_ORACLE=$$oracle $(GO) test -count=1 -timeout 60m ./tests & slow=$$!; \
		HOSTOS_ORACLE=$$oracle $(GO) test -count=1 -timeout 60m $$($(GO) list ./... | grep -v '/tests$$'); rc=$$?; \
		wait $$slow || rc=1; exit $$rc
	FUZZTIME=$(CI_FUZZTIME) scripts/fuzz.sh
	$(MAKE) e2e

# Every Go fuzz target for FUZZTIME each (default 60s); make test runs them for CI_FUZZTIME. Failing inputs land
# in the package's testdata/fuzz and are replayed by go test from then on.
CI_FUZZTIME ?= 4s
fuzz:
	scripts/fuzz.sh

# Speed and memory against the baselines the issues name, every comparison in interleaved pairs
# (scripts/bench/pairs): genimage, the shell pipeline and the tree's archives against the directory for
# build, balena-device-init and a Go hello-world (hostos --version) for configure, dd of the filesystem
# for update, docker load into a fresh dockerd for preload, a full update for a delta update.
bench: deps hostos oracle
	scripts/bench-build.sh
	HOSTOS=$(OUT)/hostos HOSTOS_ORACLE=$$(cd $(ORACLE_DIR) && pwd)/balena-oracle.js scripts/bench-configure.sh
	HOSTOS=$(OUT)/hostos scripts/bench-update.sh
	HOSTOS=$(OUT)/hostos scripts/bench-flash.sh
	HOSTOS=$(OUT)/hostos scripts/bench-preload.sh
	HOSTOS=$(OUT)/hostos scripts/bench-delta.sh

# Parse layers/meta-hostos with the bitbake of a poky checkout (scarthgap or newer): make check-layer POKY_DIR=...
check-layer:
	scripts/check-layer.sh $(POKY_DIR)

clean:
	rm -rf $(OUT)

# The QEMU end-to-end test (tests/e2e): Debian kernels and hostos, booted and updated on amd64 (OVMF, GRUB)
# and arm64 (Debian's U-Boot running hostos's boot.scr).
e2e:
	scripts/install-deps.sh e2e
	$(GO) test -tags e2e -count=1 -timeout 45m -v ./tests/e2e

# The e2e demo image booted to an interactive u-root shell on the serial console: make e2e-shell ARCH=arm64|amd64
.PHONY: e2e-shell
e2e-shell:
	scripts/install-deps.sh e2e
	tests/e2e/shell.sh $(or $(ARCH),arm64)
