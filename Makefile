# maddr build, test and reference targets. `make test` is what CI runs.
GO      ?= go
PYTHON  ?= /usr/bin/python3
BIN     := bin/maddr
# Debian's libtorch-dev puts the C++ API headers here; another libtorch is
# linked through CGO_CXXFLAGS/CGO_LDFLAGS (see README).
TORCH_HEADER ?= /usr/include/torch/csrc/api/include/torch/version.h
# The build's version, linked into package version (model files and results
# record it); without git, package version falls back on Go's build info.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null)
# Idle OpenMP workers sleep instead of spinning, for the tests too (the maddr
# binary sets this for itself: torch.ReexecWithPassiveOpenMP). Same results.
export OMP_WAIT_POLICY ?= passive
LDFLAGS := $(if $(VERSION),-X github.com/maddr-project/maddr/version.linked=$(VERSION))

.PHONY: all build deps test fixtures reference demo doctor bench vet lint fmt-check fuzz clean

all: build

# Installs libtorch-dev (and the C++ compiler cgo needs) when its headers are missing.
deps:
	@if [ -z "$$CGO_CXXFLAGS" ] && [ ! -f "$(TORCH_HEADER)" ]; then \
		echo "libtorch headers not found: installing libtorch-dev with apt-get"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libtorch-dev g++; \
	fi

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/maddr

# Real medical images from Debian packages and the DICOM module's test data,
# for the reader tests (never committed; see DATA in the README).
fixtures:
	bash tools/fetch-fixtures.sh

test: deps fixtures
	$(GO) test -timeout 30m ./...

# The main job: baseline vs MADDR on the built-in phantom data, report in demo-out/.
demo: build
	./$(BIN) demo --out demo-out

doctor: build
	./$(BIN) doctor

vet: deps
	$(GO) vet ./...

# staticcheck at a pinned version, installed with `go install` when missing or
# of another version. CI runs it next to go vet.
STATICCHECK_VERSION := v0.8.2
STATICCHECK := $(shell $(GO) env GOPATH)/bin/staticcheck
lint: deps
	@$(STATICCHECK) -version 2>/dev/null | grep -qF '($(STATICCHECK_VERSION:v%=%))' || \
		$(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	$(STATICCHECK) ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

# Regenerates the committed golden fixtures with the PyTorch reference
# (Debian python3-torch runs the same kernels as libtorch-dev).
reference:
	@$(PYTHON) -c 'import torch' 2>/dev/null || { echo "installing python3-torch"; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch python3-numpy; }
	@$(PYTHON) -c 'import PIL, sklearn' 2>/dev/null || { echo "installing python3-pil python3-sklearn"; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-pil python3-sklearn; }
	$(PYTHON) tools/reference/nn_parity.py
	$(PYTHON) tools/reference/maddr_losses.py
	$(PYTHON) tools/reference/metrics_reference.py
	$(PYTHON) tools/reference/pil_resize.py
	$(PYTHON) tools/reference/ae_parity.py
	$(PYTHON) tools/reference/memae_parity.py
	$(PYTHON) tools/reference/ganomaly_parity.py
	$(PYTHON) tools/reference/fanogan_parity.py
	$(PYTHON) tools/reference/dpa_fake_vgg.py
	$(PYTHON) tools/reference/dpa_parity.py
	$(PYTHON) tools/reference/maddr_dpa_parity.py

# Speed against the PyTorch reference; not part of `make test` (~15 minutes on 2 idle cores).
bench: build
	@$(PYTHON) -c 'import torch' 2>/dev/null || { echo "installing python3-torch"; apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-torch python3-numpy; }
	mkdir -p bench-out
	./$(BIN) bench --rounds 2 --steps 6 --warmup 2 --scaling --schedule 20 \
		--markdown bench-out/bench.md --json bench-out/bench.json --plot bench-out/bench.png \
		--scaling-plot bench-out/scaling.png

# Fuzzes every target for FUZZTIME (default 60s) each; not part of CI.
fuzz: deps
	bash tools/fuzz.sh

clean:
	rm -rf bin
