import TestSupport
import Testing
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Whether this process runs under ThreadSanitizer (its runtime is linked
/// in only then; a nil handle is glibc's RTLD_DEFAULT).
let threadSanitizerIsActive = dlsym(nil, "__tsan_init") != nil

/// A deliberately racy counter: two threads add to it with no ordering.
final class RacyCounter: @unchecked Sendable {
    var value = 0
}

@Suite("ThreadSanitizer pass")
struct SanitizerTests {
    @Test("the pass reports a data race (its options and suppressions hide none of ours)",
          .enabled(if: threadSanitizerIsActive, "needs the ThreadSanitizer pass (make test runs it)"))
    func reportsARace() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let counter = RacyCounter()
            let threads = (0..<2).map { _ in JoinableThread { for _ in 0..<10_000 { counter.value += 1 } } }
            threads.forEach { $0.join() }
            exit(0)
        }
        let report = standardError(of: result)
        // A data race, or the same race seen through Swift's access tracking.
        #expect(report.contains("WARNING: ThreadSanitizer:") && report.contains("race"), "stderr was: \(report.suffix(2000))")
    }
}
