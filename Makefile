# paystream: thin wrapper over CMake and the local stack.
#   make        install dependencies (Debian) and build (release, ./build)
#   make test   install, build with AddressSanitizer + UBSan (./build-asan), run every test
#   make demo   install, build, run the whole pipeline locally with a demo load
JOBS ?= 2

.PHONY: all deps build build-asan test unit demo clean

all: build

deps:
	@deploy/local/install-deps

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Asan >/dev/null
	@cmake --build build-asan -j $(JOBS)

# Two tests at a time (TEST_JOBS=1 for one): each integration scenario runs
# its own stack on free ports, and most of a scenario's time is waiting.
TEST_JOBS ?= 2
test: build-asan
	@cd build-asan && ctest --output-on-failure --timeout 900 -j $(TEST_JOBS)

unit: build-asan
	@cd build-asan && ctest --output-on-failure -R '^unit_'

demo: build
	@deploy/local/demo

clean:
	rm -rf build build-asan .run
