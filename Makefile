# brainpipe — set-up, build, demo and tests. Two commands on a fresh machine: `make demo`, `make test`.
#
# LibTorch comes from the PyPI wheel torch==2.11.0 in a venv outside the clone (GPU.md); a small
# peers venv (bench/reference/requirements.txt, pinned; torch seen through a .pth file) holds the
# libraries our tests use as oracles. Both live under ~/.cache/brainpipe and are reused by every clone, as is the target dir.

SHELL := /bin/bash
CACHE_HOME   ?= $(HOME)/.cache/brainpipe
TORCH_VENV   ?= $(CACHE_HOME)/torch-2.11.0
REF_VENV     ?= $(CACHE_HOME)/refenv
PYTHON       ?= python3
CARGO_TARGET_DIR ?= $(CACHE_HOME)/target
CARGO        ?= cargo
PROFILE      ?= release

export CARGO_TARGET_DIR
export LIBTORCH_USE_PYTORCH := 1
export VIRTUAL_ENV := $(TORCH_VENV)
export PATH := $(TORCH_VENV)/bin:$(PATH)
export BRAINPIPE_REF_PYTHON := $(REF_VENV)/bin/python

TORCH_STAMP := $(TORCH_VENV)/.brainpipe-torch-2.11.0
REF_STAMP   := $(REF_VENV)/.brainpipe-refenv-2
BIN         := $(CARGO_TARGET_DIR)/$(PROFILE)/brainpipe

.PHONY: all demo test build lint fmt bench fuzz doctor venv refenv clean-cache help

all: build

help:
	@echo "make demo    build and run pipelines/demo.yaml (= brain2word.yaml) and pipelines/brain2clip.yaml on the synthetic studies, write the reports"
	@echo "make test    unit + integration tests (creates the venvs when missing)"
	@echo "make lint    cargo fmt --check and clippy -D warnings"
	@echo "make bench   benchmarks under bench/ (results in bench/out/)"
	@echo "make fuzz    build the cargo-fuzz targets (nightly) and run each FUZZ_SECONDS (600) from fuzz/corpus"

venv: $(TORCH_STAMP)
$(TORCH_STAMP):
	@echo "==> creating LibTorch venv $(TORCH_VENV) (PyPI torch==2.11.0, ~4.6 GB, once per machine)"
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_VENV)/bin/pip install --quiet --disable-pip-version-check torch==2.11.0
	@touch $@

refenv: $(REF_STAMP)
$(REF_STAMP): bench/reference/requirements.txt $(TORCH_STAMP)
	@echo "==> creating the peers venv $(REF_VENV) (bench/reference/requirements.txt: numpy scipy pyarrow nibabel scikit-image Pillow transformers diffusers polars; torch from $(TORCH_VENV))"
	rm -rf $(REF_VENV)
	$(PYTHON) -m venv $(REF_VENV)
	$(REF_VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/reference/requirements.txt
	$(REF_VENV)/bin/python -c 'import site, sys; print(sys.argv[1])' \
		"$$($(TORCH_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')" \
		> "$$($(REF_VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/brainpipe-torch-venv.pth"
	$(REF_VENV)/bin/python -c 'import torch, transformers, diffusers, skimage, pyarrow, nibabel, scipy, polars; assert torch.__version__.startswith("2.11.0"), torch.__version__'
	@touch $@

build: venv
	$(CARGO) build --profile $(PROFILE) --bins

demo: build
	$(BIN) run pipelines/demo.yaml
	$(BIN) run pipelines/brain2clip.yaml
	@echo "==> report: pipelines/.brainpipe/runs/brain2word/report/report.html"
	@echo "==> report: pipelines/.brainpipe/runs/brain2clip/report/report.html"
	@echo "==> every output: pipelines/.brainpipe/runs/brain2word/<stage>/"

doctor: build
	$(BIN) doctor

test: venv refenv
	$(CARGO) test --workspace --no-fail-fast

lint: venv
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

bench: venv refenv
	bash bench/run.sh

# cargo-fuzz targets of fuzz/ (its own workspace; target dir and found corpus under CACHE_HOME).
FUZZ_SECONDS ?= 600
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) CACHE_HOME=$(CACHE_HOME) bash fuzz/smoke.sh

clean-cache:
	rm -rf pipelines/.brainpipe
