# flowbus: the two commands of the quick start are `make demo` and `make test`.
BUILD ?= build
JOBS ?= 2
DEB_PACKAGES = cmake g++ make libboost-dev libflatbuffers-dev flatbuffers-compiler libcli11-dev \
               libconcurrentqueue-dev libgtest-dev libgmock-dev libbenchmark-dev \
               libzmq3-dev gnuplot-nox

.PHONY: deps build demo test bench clean

deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else \
	    echo "missing Debian packages; run: sudo apt-get install -y$$missing"; exit 1; \
	  fi; \
	fi

$(BUILD)/CMakeCache.txt: | deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: build
	$(BUILD)/bin/flowbus demo

test: build
	cd $(BUILD) && ctest --output-on-failure -j$(JOBS) --timeout 300

bench: build
	mkdir -p bench/results
	$(BUILD)/bin/ring_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true \
	  --benchmark_out=bench/results/ring_bench.json --benchmark_out_format=json

clean:
	rm -rf $(BUILD)
