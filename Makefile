# flowbus: the two commands of the quick start are `make demo` and `make test`.
BUILD ?= build
JOBS ?= 2
DEB_PACKAGES = cmake g++ make libboost-dev libflatbuffers-dev flatbuffers-compiler libcli11-dev \
               libconcurrentqueue-dev libgtest-dev libgmock-dev libbenchmark-dev \
               libzmq3-dev gnuplot-nox libssl-dev relacy-dev libzstd-dev liblz4-dev nodejs prometheus \
               dpkg-dev file pkgconf lintian \
               pybind11-dev python3-dev python3-pytest python3-flatbuffers \
               libnats-dev nats-server
# `make fuzz` also needs clang and its libFuzzer/sanitizer runtimes.
FUZZ_DEB_PACKAGES = clang-14 libclang-rt-14-dev
# `make lint` needs clang-format and clang-tidy.
LINT_DEB_PACKAGES = clang-format-14 clang-tidy-14
FUZZ_BUILD = build-fuzz
FUZZ_SECONDS ?= 30
FUZZ_TARGETS = ring_records directory schema json_to_flatbuffer wire_frames

.PHONY: deps fuzz-deps lint-deps lint build demo test package soak bench fuzz fuzz-corpus clean

# $(call install_missing,packages): installs the missing Debian packages (as root), or says how.
define install_missing
	@missing=""; for p in $(1); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi
endef

deps:
	$(call install_missing,$(DEB_PACKAGES))

fuzz-deps:
	$(call install_missing,$(FUZZ_DEB_PACKAGES))

lint-deps:
	$(call install_missing,$(LINT_DEB_PACKAGES))

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/bin/flowbus demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 300

# clang-format on every C/C++ line changed since .ci/format-base (older lines
# are left as they are), then clang-tidy (.clang-tidy: bugprone, concurrency,
# performance; any warning fails) on the core's sources.
lint: lint-deps build
	.ci/check-format
	@echo "clang-tidy on core/src (log: $(BUILD)/clang-tidy.log)"
	@run-clang-tidy-14 -clang-tidy-binary clang-tidy-14 -p $(BUILD) -j$(JOBS) -quiet 'core/src/.*\.cpp' >$(BUILD)/clang-tidy.log 2>&1; \
	  rc=$$?; grep -E 'warning:|error:' $(BUILD)/clang-tidy.log | sort -u; \
	  if [ $$rc -eq 0 ]; then echo "clang-tidy: no warning"; else echo "clang-tidy failed: see above and $(BUILD)/clang-tidy.log"; fi; exit $$rc

# The Debian package (CPack, cmake/install.cmake): $(BUILD)/flowbus_<version>_<arch>.deb.
package: build
	cd $(BUILD) && cpack -G DEB
	@ls -t $(BUILD)/flowbus_*.deb | head -1

# The long variants of the fault tests, under ASan+UBSan, building only their
# programs: the rogue writer for 3 minutes, 5000 kill rounds each, 2000
# random-kill cleanup rounds, and the connection cut every 1-5 s for 5 minutes
# (about 15 minutes of tests on two cores, after the build).
SOAK_ENV = FLOWBUS_ROGUE_SECONDS=180 FLOWBUS_TORTURE_ROUNDS=5000 FLOWBUS_CLEANUP_ROUNDS=2000 FLOWBUS_PROXY_SECONDS=300 \
           ASAN_OPTIONS=handle_segv=0:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
soak: deps
	cmake --preset asan -DFLOWBUS_TEST_TIMEOUT=7200 >/dev/null
	cmake --build build-asan -j$(JOBS) --target torture_test rogue_test cleanup_test sidecar_test
	cd build-asan && $(SOAK_ENV) ctest --output-on-failure -j1 --timeout 7200 -R 'TortureTest|RogueWriterTest|CleanupTest|AConnectionCutEveryFewSeconds'

bench: build
	mkdir -p bench/results
	$(BUILD)/bin/ring_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
	  --benchmark_out=bench/results/ring_bench.json --benchmark_out_format=json

# Builds the libFuzzer targets (preset `fuzz`) and runs each for FUZZ_SECONDS
# on a copy of its corpus, so the tree is not modified. Fails on the first
# crash, leak or hang; the input that did it is kept in $(FUZZ_BUILD)/artifacts/.
# Afterwards removes directory segments the `directory` target left behind
# (flowbus.fuzzdir-<pid>, only if that process is gone: a crash mid-input).
fuzz: deps fuzz-deps
	cmake --preset fuzz >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzzers
	@mkdir -p $(FUZZ_BUILD)/artifacts; failed=""; \
	for t in $(FUZZ_TARGETS); do \
	  work=$$(mktemp -d); cp -r fuzz/corpus/$$t "$$work/corpus"; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS)s"; \
	  $(FUZZ_BUILD)/bin/$${t}_fuzz -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=2048 \
	    -print_final_stats=1 -artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- "$$work/corpus" 2>"$$work/log"; rc=$$?; \
	  grep -E 'DONE +cov|^Done |stat::number_of_executed_units|stat::peak_rss_mb' "$$work/log"; \
	  if [ $$rc -ne 0 ]; then tail -60 "$$work/log"; failed="$$t (exit $$rc)"; fi; \
	  rm -rf "$$work"; \
	  [ -z "$$failed" ] || break; \
	done; \
	for seg in /dev/shm/flowbus.fuzzdir-*; do \
	  [ -e "$$seg" ] && ! kill -0 "$${seg##*-}" 2>/dev/null && rm -f "$$seg"; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz target $$failed failed; its input is in $(FUZZ_BUILD)/artifacts/"; exit 1; fi

# Regenerates the generated seeds of fuzz/corpus/ (real rings and directories).
fuzz-corpus: deps fuzz-deps
	cmake --preset fuzz >/dev/null
	cmake --build $(FUZZ_BUILD) -j$(JOBS) --target fuzz_make_corpus
	$(FUZZ_BUILD)/bin/fuzz_make_corpus fuzz/corpus

clean:
	rm -rf $(BUILD)
