# sweep — two commands on a fresh machine: `make demo` and `make test`.
# libtorch (PyTorch 2.11.0 from PyPI) is installed once into
# ${XDG_CACHE_HOME:-~/.cache}/sweep/torch-2.11.0 and shared by every clone;
# set LIBTORCH to use an existing libtorch instead.
SHELL := /bin/bash
.ONESHELL:
.SHELLFLAGS := -eu -o pipefail -c

TORCH_DIR = $$(scripts/install-libtorch.sh)
SWEEP := target/release/sweep

.PHONY: all libtorch build demo test clippy fmt clean bench-gpu

all: build

libtorch:
	@scripts/install-libtorch.sh >/dev/null

build: libtorch
	export LIBTORCH="$(TORCH_DIR)"
	cargo build --release

# Demo: synthetic 12-class zodiac data, the quickstart sweep, the report.
demo: build
	if [ ! -d data/demo ]; then $(SWEEP) data demo data/demo; fi
	$(SWEEP) run sweeps/quickstart.toml --plain
	$(SWEEP) report --best accuracy

# The whole test suite. Tests run in release mode (training in a debug build
# is needlessly slow) and use the installed PyTorch for reference outputs.
test: build
	export LIBTORCH="$(TORCH_DIR)"
	export SWEEP_INSTALL_CHROMIUM=1
	export SWEEP_PYTHON="$$(dirname "$$(dirname "$$(dirname "$$(dirname "$$LIBTORCH")")")")/bin/python"
	cargo test --release -- --test-threads=2

clippy: libtorch
	export LIBTORCH="$(TORCH_DIR)"
	cargo clippy --release --all-targets -- -D warnings

fmt:
	cargo fmt

bench-gpu: build
	bench/gpu-smoke.sh

clean:
	cargo clean
