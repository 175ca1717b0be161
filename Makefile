# swift-urcu: the two commands of the README, and the pieces they run.
#   make torture   the main job: the torture run on real threads
#   make test      the whole suite: Swift tests (plain, under ASan and
#                  LeakSanitizer, under TSan), compile-fail checks, spec and
#                  proofs
# Both install what is missing first (scripts/ensure-deps.sh).

SWIFT ?= swift
TORTURE_SECONDS ?= 20

.PHONY: all deps build test swift-test sanitize-address sanitize-thread compile-fail spec torture bench clean \
	model-based-wide

all: build

deps:
	@scripts/ensure-deps.sh

build: deps
	$(SWIFT) build

test: deps swift-test sanitize-address sanitize-thread compile-fail spec

swift-test: deps
	$(SWIFT) test

# Every test again under AddressSanitizer and LeakSanitizer, in a build
# directory of its own (scripts/lsan.supp says what is suppressed and why).
# The fork storm runs in the plain pass only: under ASan a fork took
# 170 ms (3,000 forks: 513 s) and some children failed, which the storm
# does not see in the plain pass (0 of 30,000); the deterministic fork
# tests still run here.
sanitize-address: deps
	LSAN_OPTIONS=suppressions=$(CURDIR)/scripts/lsan.supp \
		$(SWIFT) test --sanitize=address --scratch-path .build/asan --skip "ForkTests/forkStorm"

# The tests again under ThreadSanitizer, torture scenarios included, built
# with -D URCU_TSAN: locks TSan can see, and liburcu's ordering (call_rcu to
# callback, read unlock to grace-period end) told to TSan; see
# Sources/URCU/ThreadSanitizer.swift. Nothing is suppressed. Left out:
# the conformance suite (TLC runs, and a lock-step harness), and fork()
# (the ForkTests suites and the fork scenario of LibraryWaitTests), which
# TSan does not support once threads exist.
sanitize-thread: deps
	$(SWIFT) test --sanitize=thread --scratch-path .build/tsan -Xswiftc -DURCU_TSAN \
		--skip Conformance --skip ForkTests --skip "LibraryWaitTests/fork"

compile-fail: deps
	Tests/compile-fail/run.sh

spec: deps
	Spec/check.sh

torture: deps
	$(SWIFT) run -c release urcu-torture --seconds $(TORTURE_SECONDS)

# The model-based tests on the graph of 2 contexts and 2 threads
# (Spec/MBTLifecycleWide.cfg, about 92,000 states): too slow for make test
# (times in Spec/README.md). Built optimised, with testing enabled for the
# tests' @testable imports, in a build directory of its own.
model-based-wide: deps
	MODEL_BASED_WIDE=1 $(SWIFT) test -c release -Xswiftc -enable-testing --scratch-path .build/release-tests \
		--filter "ModelBasedTests/wideCoverage"

# The whole benchmark, then the read side again with QSBR's read-side
# checks compiled out (the package trait QSBRReadSideChecks, on by
# default, turned off), each against C in its own run.
bench: deps
	$(SWIFT) run -c release urcu-bench
	$(SWIFT) run -c release --disable-default-traits --scratch-path .build/unchecked urcu-bench read

clean:
	rm -rf .build
