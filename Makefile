# ras: the two commands of the README are `make demo` and `make test`.
# Both install what is missing first and are safe to run again.
SHELL := /bin/bash
LIBTORCH ?= $(HOME)/.cache/libtorch-2.11.0-cpu
export LIBTORCH
CARGO ?= cargo
RAS := target/release/ras
DEMO_DATA := out/demo-data

# dist: a relocatable bundle dist/ras-<version>/ (bin/ras + lib/, RUNPATH $ORIGIN/../lib).
.PHONY: dist
dist: build
	bash scripts/dist.sh $(RAS)

.PHONY: chaos demo-data setup setup-python setup-s3 setup-browser bench-serve bench-serve-s3 bench-search bench-verdicts build build-cuda check-cuda-build lint demo test bench bench-coordinator bench-coordinator-s3 bench-plan clean-demo slurm-up slurm-down slurm2-up slurm2-down

setup:
	@bash scripts/setup.sh

build: setup
	$(CARGO) build --release --features nccl

# Synthetic dataset (written to a temporary folder, then published by rename), its
# features, a small training run and its per-class table; then the quickstart sweep
# (4 tiny runs through the coordinator on this machine) and its report.
demo: build demo-data
	$(RAS) train configs/demo.toml
	$(RAS) sweep jobs/quickstart.toml --cluster cluster/local.toml
	$(RAS) report jobs/quickstart.toml --cluster cluster/local.toml --out reports/quickstart

# The synthetic dataset of configs/demo.toml (idempotent).
demo-data: build
	@if [ ! -d $(DEMO_DATA) ]; then \
	  rm -rf $(DEMO_DATA).partial && \
	  $(RAS) data synth --out $(DEMO_DATA).partial --classes 4 --seed 0 && \
	  mv $(DEMO_DATA).partial $(DEMO_DATA); \
	else echo "demo dataset present: $(DEMO_DATA)"; fi

# The PyTorch reference environment of the parity tests (.venv-ref).
setup-python: setup
	@bash scripts/setup-python.sh

# The S3 server of tests/s3.rs (s3s-fs, cargo install: minutes, once).
setup-s3: setup
	@bash scripts/setup-s3.sh

# Headless Chromium and chromedriver from Debian (tests/browser.rs: `ras serve` in a real browser).
setup-browser: setup
	@bash scripts/setup-browser.sh

# ras-cuda: the same program linked against libtorch_cuda.so of the torch 2.11.0 wheel that
# .venv-ref holds (build.rs puts the CUDA link flags on this binary only). For GPU machines:
# cluster/gpu-check.sh build carries it there. Same target dir: only the ras crate is
# compiled again (with feature cuda), every dependency is shared.
build-cuda: build setup-python
	$(CARGO) build --release --features cuda --bin ras-cuda

# Proof here, without a GPU, that the CUDA build links and starts (scripts/check-cuda-build.sh).
check-cuda-build: build-cuda
	bash scripts/check-cuda-build.sh

# Formatting and lints (release profile: clippy then reuses the build scripts' outputs,
# torch-sys's C++ wrapper among them).
lint: setup
	$(CARGO) fmt --check
	$(CARGO) clippy --release --all-targets --features nccl -- -D warnings

test: build setup-python setup-s3 setup-browser lint check-cuda-build
	$(CARGO) test --release --features nccl

# (a) the paper's shapes, (b) a tiny model (batch 2, hidden 32, T_e = T_d = 1) where the
# time is per-op overhead: each beside PyTorch eager in the same command (with
# .venv-ref present: `make setup-python`).
bench: build
	$(RAS) bench train-step
	$(RAS) bench train-step --batch 2 --hidden-dim 32 --encoder-layers 1 --decoder-layers 1 --steps 300 --epoch-images 0

# The coordinator's cost per poll cycle at 2000 runs, on the local test Slurm with its
# partition DOWN so that every job stays pending; the partition is set UP again after.
bench-coordinator: build
	bash cluster/slurm-up.sh
	scontrol update PartitionName=debug State=DOWN
	$(RAS) bench coordinator --runs 2000 --cycles 6 --cluster cluster/ci-slurm.toml; rc=$$?; \
	  scontrol update PartitionName=debug State=UP; exit $$rc

# The same against the test S3 server behind a loopback forwarder adding 20 ms to every
# request (a cloud store's round trip), then `ras status`, `ras report` and `ras runs` of
# the sweep once finished. Figures in README (Sweeps at scale).
bench-coordinator-s3: build setup-s3
	bash cluster/slurm-up.sh
	scontrol update PartitionName=debug State=DOWN
	$(RAS) bench coordinator --runs 2000 --cycles 6 --cluster cluster/ci-slurm.toml --s3 --latency-ms 20; rc=$$?; \
	  scontrol update PartitionName=debug State=UP; exit $$rc

# What `ras serve`'s sweep page costs on a 2000-run finished sweep: first view, refresh with
# nothing changed (one LIST), beside `ras report`; then the same on the test S3 server
# behind 20 ms per request. Figures in README (Watching a sweep: ras serve).
# Successive halving against the grid: jobs/search.toml beside jobs/search-grid.toml on this
# machine (about 5 minutes); figures in README (Searches).
# (One intra-op thread per job, as cluster/local.toml gives each rank one core: the runs
# are compared bit for bit.)
bench-search: build demo-data
	OMP_NUM_THREADS=1 $(RAS) bench search --cluster cluster/local.toml

bench-verdicts: build
	$(RAS) bench verdicts

# Chaos at sweep scale, the long version of tests/chaos (its short one is part of `make
# test`): faults injected for CHAOS_SECONDS (10 minutes) into sweeps of CHAOS_RUNS 1-rank
# runs (+ a third as many 2-rank runs) on the two-node test Slurm and s3s-fs (under faults
# they finish about one run a minute: give about one run per minute of faults); everything
# kept in CHAOS_KEEP. A new seed each time (from the clock, printed); CHAOS_SEED=N replays
# one (a failure names it).
CHAOS_SECONDS ?= 600
CHAOS_RUNS ?= 15
CHAOS_KEEP ?= out/chaos
CHAOS_SEED ?= $(shell date +%s)
chaos: build setup-s3
	CHAOS_SEED=$(CHAOS_SEED) CHAOS_SECONDS=$(CHAOS_SECONDS) CHAOS_RUNS=$(CHAOS_RUNS) CHAOS_KEEP=$(abspath $(CHAOS_KEEP)) \
	  $(CARGO) test --release --features nccl --test chaos -- --nocapture

bench-serve: build
	$(RAS) bench serve --runs 2000

bench-serve-s3: build setup-s3
	$(RAS) bench serve --runs 2000 --s3 --latency-ms 20

# How far `ras plan` is from what the runs then cost, on the test Slurm: a Table-5-shaped
# sweep of tiny runs, one run first, then the others planned from it and run (actual /
# planned per run). Figures in README (Benchmarks: how good the plan is).
bench-plan: build
	bash cluster/slurm-up.sh
	$(RAS) bench plan --cluster cluster/ci-slurm.toml --exclusive

# The demo's data and what the demo and the quickstart sweep wrote to the default store
# (./ras-store, where `ras runs` and friends look); other runs there are kept.
clean-demo:
	rm -rf out/demo-data out/demo-store .ras-sweeps/quickstart reports/quickstart
	rm -rf ras-store/runs/demo-* ras-store/runs/quickstart-* ras-store/sweeps/quickstart

# The single-node Slurm the coordinator tests use (root; idempotent). tests/coordinator.rs
# calls slurm-up.sh itself; these targets are for trying `ras sweep` by hand.
slurm-up:
	bash cluster/slurm-up.sh

slurm-down:
	bash cluster/slurm-down.sh

# The two-node Slurm (n1, n2 on this machine) of tests/multinode.rs, for trying placement
# by hand: export SLURM_CONF=/tmp/ras-slurm2/etc/slurm.conf, then use
# --cluster cluster/ci-slurm-2node.toml.
slurm2-up:
	bash cluster/slurm-2node-up.sh

slurm2-down:
	bash cluster/slurm-2node-down.sh
