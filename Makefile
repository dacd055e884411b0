# hostos: build, configure and update balenaOS-style images.
GO      ?= go
OUT     ?= out
ORACLE_DIR ?= .cache/balena-oracle
SHARED  ?= ../shared

.PHONY: all hostos demo deps oracle test vet bench clean

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

# Every test: unit, codec, end-to-end build and interop with balena's tools.
test: deps oracle vet
	HOSTOS_ORACLE=$$( [ -f $(ORACLE_DIR)/balena-oracle.js ] && cd $(ORACLE_DIR) && pwd )/balena-oracle.js \
		$(GO) test -count=1 -timeout 40m ./...

bench: deps hostos
	scripts/bench-build.sh

clean:
	rm -rf $(OUT)
