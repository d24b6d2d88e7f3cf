# Topiary: `make demo` runs the main job, `make test` runs every test. Both install what is missing
# (Debian packages as root, a Python venv for the test oracle) and build first.

SHELL := /bin/bash
APT_PACKAGES := libprotobuf-c-dev protobuf-c-compiler zlib1g-dev libopenblas-dev
VENV := .venv
PYTHON := $(VENV)/bin/python
TOPIARY := .build/release/topiary
JOBS ?= 2
# Code generation for the machine that builds (AVX2/AVX-512 where it has them): 15-25 % faster
# training than generic x86-64 here. `make ARCH_FLAGS= build` gives a binary for any x86-64.
ARCH_FLAGS ?= -Xswiftc -target-cpu -Xswiftc native -Xcc -march=native

.PHONY: all deps venv build demo test test-swift test-oracle bench clean

all: build

deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: Tests/oracle/requirements.txt
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r Tests/oracle/requirements.txt
	touch $@

build: deps
	swift build -c release -j $(JOBS) $(ARCH_FLAGS) --product topiary

demo: build
	$(TOPIARY) run pipeline.yml --out out/pipeline

test: test-swift test-oracle

test-swift: deps
	swift build --build-tests -j $(JOBS) $(ARCH_FLAGS)
	swift test --skip-build

test-oracle: build venv
	TOPIARY=$(abspath $(TOPIARY)) $(PYTHON) -m pytest Tests/oracle -q -p no:cacheprovider

# Benchmarks need the bench venv (PyTorch, Torch-Pruning, thop, fvcore, onnx-tool), outside the
# repo: see fixtures/make_models.py. Fashion-MNIST comes from Debian's dataset-fashion-mnist.
BENCH_PYTHON ?= /root/benchvenv/bin/python

bench: build
	@dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null)
	swift build -c release -j $(JOBS) $(ARCH_FLAGS) --product topiary-bench
	$(BENCH_PYTHON) bench/io_bench.py
	$(BENCH_PYTHON) bench/prune_bench.py
	$(BENCH_PYTHON) bench/train_bench.py
	$(BENCH_PYTHON) bench/cost_compare.py
	$(BENCH_PYTHON) bench/methods_bench.py

clean:
	rm -rf .build out
