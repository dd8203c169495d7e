# Developer entry points for aioflow. On a fresh Debian/Ubuntu machine:
#   make demo   # system packages, .venv, editable install, a flow table of the bundled capture
#   make test   # the same plus tshark/tcpdump, then ruff and pytest
# Everything is idempotent: a second run skips what is already in place.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BENCH_ARGS ?=
PIP := $(PY) -m pip --disable-pip-version-check
CAPTURE := examples/data/ndpi_telegram_videocall.pcapng

# python3-dev: Python.h for the cffi extension; libc6-dev: C headers when gcc came without them.
DEMO_PKGS := libpcap-dev libvectorscan-dev zlib1g-dev libzstd-dev libndpi-dev libssl-dev pkg-config gcc libc6-dev python3-dev python3-venv
TEST_PKGS := $(DEMO_PKGS) libndpi-bin chromium tshark tcpdump iproute2 iputils-ping curl util-linux ngrep tcpflow nfdump softflowd

# The compiled engine: rebuilt whenever one of these changes (pip alone does not notice header edits).
NATIVE_DEPS := setup.py pyproject.toml aioflow/_build_pcap.py $(wildcard aioflow/_native.c) \
	$(wildcard aioflow/_csrc/*.c) $(wildcard aioflow/_csrc/*.h)
DEV_STAMP := $(VENV)/.aioflow-dev
NATIVE_STAMP := $(VENV)/.aioflow-native

SAN_CFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g -O1
SAN_LDFLAGS := -fsanitize=address,undefined
SAN_LOG_DIR := build/sanitize
# make sanitize SANITIZE_TESTS=tests/test_report.py: the same checks on part of the suite
SANITIZE_TESTS ?=

# make fuzz: every fuzz/fuzz_*.c is a libFuzzer harness linked with the whole engine; each runs
# FUZZ_SECONDS from its corpus (seeded by fuzz/seed_corpus.py, grown by the runs) in FUZZ_DIR.
FUZZ_PKGS := $(DEMO_PKGS) clang libclang-rt-dev
FUZZ_SECONDS ?= 60
FUZZ_ARGS ?=
FUZZ_DIR := build/fuzz
FUZZ_HARNESSES := $(patsubst fuzz/%.c,$(FUZZ_DIR)/%,$(wildcard fuzz/fuzz_*.c))
FUZZ_CFLAGS := -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined \
	-fno-sanitize-recover=undefined -pthread -Iaioflow/_csrc
ENGINE_SRCS := $(wildcard aioflow/_csrc/*.c) aioflow/_native.c   # rebuild triggers; fuzz/engine_build.py lists what is compiled

# $(call ensure_pkgs,PACKAGES): install what is missing when root, else print the command and stop.
# dpkg-query rather than `command -v`: libpcap-dev and python3-dev ship no command to look for.
define ensure_pkgs
if ! command -v dpkg-query >/dev/null 2>&1; then \
	echo "make: not a Debian-like system; make sure these are installed: $(1)"; exit 0; \
fi; \
missing=""; \
for p in $(1); do \
	dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
done; \
if [ -z "$$missing" ]; then exit 0; fi; \
if [ "$$(id -u)" != 0 ]; then \
	echo "make: missing system packages:$$missing"; \
	echo "make: install them with:"; \
	echo "  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y$$missing"; \
	exit 1; \
fi; \
echo "make: installing system packages:$$missing"; \
case " $$missing " in *" tshark "*) \
	echo 'wireshark-common wireshark-common/install-setuid boolean false' | debconf-set-selections;; \
esac; \
apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing
endef

.PHONY: help demo test lint sanitize fuzz fuzz-build bench clean distclean sys-demo sys-test sys-fuzz dev

help:
	@echo "make demo      set up (system packages, .venv) and print the flows of $(CAPTURE)"
	@echo "make test      set up with tshark/tcpdump, then ruff check and pytest"
	@echo "make dev       (re)build the extension in .venv after C changes (demo/test do it too)"
	@echo "make lint      ruff check"
	@echo "make sanitize  rebuild with ASan+UBSan, run the tests, rebuild normally"
	@echo "make fuzz      build the libFuzzer harnesses (fuzz/fuzz_*.c), run each FUZZ_SECONDS=$(FUZZ_SECONDS)"
	@echo "make bench     run benchmarks/run.py (options: make bench BENCH_ARGS=--quick)"
	@echo "make clean     remove build artefacts (make distclean also removes .venv)"

sys-demo:
	@$(call ensure_pkgs,$(DEMO_PKGS))

sys-test:
	@$(call ensure_pkgs,$(TEST_PKGS))

sys-fuzz:
	@$(call ensure_pkgs,$(FUZZ_PKGS))

$(PY):
	$(PYTHON) -m venv $(VENV)

# Build requirements go into the venv too, so later rebuilds can skip pip's isolated build env
# (faster, and offline).
$(DEV_STAMP): $(PY) pyproject.toml
	$(PIP) install -q --upgrade pip 'setuptools>=77' wheel 'cffi>=1.16'
	$(PIP) install -q -e '.[dev]'
	touch $(NATIVE_STAMP) $@

# Removing the old module first makes setuptools recompile even when only a header changed.
$(NATIVE_STAMP): $(NATIVE_DEPS) | $(DEV_STAMP)
	rm -f aioflow/_native*.so
	$(PIP) install -q --no-build-isolation --no-deps -e .
	touch $@

dev: $(DEV_STAMP) $(NATIVE_STAMP)

demo: sys-demo
	@$(MAKE) --no-print-directory dev
	$(VENV)/bin/aioflow flows $(CAPTURE)

# nfstream (tests/test_statistics.py compares the statistics and splt meters with it) in a venv of
# its own, so its numpy/pandas stay out of aioflow's; the test makes it too when it is missing.
NFSTREAM_VENV := build/nfstream-venv
NFSTREAM_SPEC := nfstream==6.6.0

$(NFSTREAM_VENV)/.installed:
	$(PYTHON) -m venv $(NFSTREAM_VENV)
	$(NFSTREAM_VENV)/bin/python -m pip install -q --disable-pip-version-check '$(NFSTREAM_SPEC)' || \
		echo "make: nfstream could not be installed; tests/test_statistics.py will skip its comparison"
	touch $@

test: sys-test $(NFSTREAM_VENV)/.installed
	@$(MAKE) --no-print-directory dev
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -q

lint: sys-demo
	@$(MAKE) --no-print-directory dev
	$(VENV)/bin/ruff check .

bench: sys-demo
	@$(MAKE) --no-print-directory dev
	$(PY) benchmarks/run.py $(BENCH_ARGS)

# The interpreter is not instrumented, so libasan must be preloaded to come first. ASan reports go
# to log files, so a report from a subprocess whose exit code a test ignores still fails the run;
# UBSan (which ignores log_path when built into ASan) halts the process with exit code 1.
sanitize: sys-test
	@$(MAKE) --no-print-directory dev
	rm -rf $(SAN_LOG_DIR) && mkdir -p $(SAN_LOG_DIR)
	rm -f aioflow/_native*.so $(NATIVE_STAMP)
	AIOFLOW_CFLAGS="$(SAN_CFLAGS)" AIOFLOW_LDFLAGS="$(SAN_LDFLAGS)" \
		$(PIP) install -q --no-build-isolation --no-deps -e .
	@# libstdc++ is preloaded too: Vectorscan (C++) throws while compiling patterns, and ASan can
	@# only intercept that when libstdc++ is there before the host (python, a C program) starts.
	@# A builder that dropped the flags would make this target pass without checking anything.
	@# (Not grep -q: with pipefail, ldd killed by SIGPIPE would fail the check at random.)
	ldd aioflow/_native*.so | grep libasan >/dev/null || { echo "make: the extension is not built with ASan"; exit 1; }
	status=0; \
	libasan="$$(gcc -print-file-name=libasan.so)"; \
	libstdcxx="$$(gcc -print-file-name=libstdc++.so.6)"; \
	LD_PRELOAD="$$libasan $$libstdcxx" \
	ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:log_path=$(CURDIR)/$(SAN_LOG_DIR)/asan" \
	UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1" \
		$(PY) -m pytest -q $(SANITIZE_TESTS) || status=$$?; \
	rm -f aioflow/_native*.so; \
	$(PIP) install -q --no-build-isolation --no-deps -e . && touch $(NATIVE_STAMP); \
	if compgen -G '$(SAN_LOG_DIR)/*' >/dev/null; then \
		echo "make: sanitizer reports:"; cat $(SAN_LOG_DIR)/*; status=1; \
	fi; \
	if [ $$status != 0 ]; then echo "make sanitize: FAILED"; fi; \
	exit $$status

# Sources and flags come from _build_pcap.py (fuzz/engine_build.py), so a harness links the same
# engine as the extension (Vectorscan when present: stream search is fuzzed too).
$(FUZZ_DIR)/fuzz_%: fuzz/fuzz_%.c $(ENGINE_SRCS) $(wildcard aioflow/_csrc/*.h) | sys-fuzz $(DEV_STAMP)
	@mkdir -p $(FUZZ_DIR)
	engine="$$($(PY) fuzz/engine_build.py)"; clang $(FUZZ_CFLAGS) -o $@ $< $$engine

fuzz-build: $(FUZZ_HARNESSES)

# Crashes land in FUZZ_DIR/crashes (libFuzzer's crash-*/leak-*/timeout-* files) and fail the run.
fuzz: fuzz-build
	@$(MAKE) --no-print-directory dev
	@mkdir -p $(FUZZ_DIR)/crashes
	for h in $(FUZZ_HARNESSES); do \
		name=$$(basename $$h); corpus=$(FUZZ_DIR)/corpus/$$name; \
		if [ ! -d $$corpus ]; then $(PY) fuzz/seed_corpus.py $$name $$corpus; fi; \
		echo "make fuzz: $$name for $(FUZZ_SECONDS) s"; \
		$$h -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 -artifact_prefix=$(FUZZ_DIR)/crashes/$$name- \
			$(FUZZ_ARGS) $$corpus; \
	done

clean:
	rm -rf build dist *.egg-info .pytest_cache .ruff_cache
	rm -f aioflow/_native*.so aioflow/_native.c.* $(NATIVE_STAMP)
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
