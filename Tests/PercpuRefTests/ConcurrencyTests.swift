import PercpuRef
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// PercpuRef on real threads over real liburcu grace periods.
@Suite("PercpuRef on threads")
struct ConcurrencyTests {
    @Test("concurrent get/put across a kill releases exactly once", arguments: 0..<5)
    func oneReleaseAcrossKill(round: Int) {
        let releases = Counter()
        let ref = PercpuRef<MembarrierRCU> { releases.increment() }
        let confirmed = Latch()
        let liveAfterConfirm = Counter()
        let operations = Counter()
        let threads = (0..<3).map { _ in
            JoinableThread {
                // Keep taking and dropping references until the ref dies and
                // the kill is confirmed.
                while true {
                    let confirmedBefore = confirmed.isOpen
                    if ref.tryGetLive() {
                        if confirmedBefore { liveAfterConfirm.increment() }
                        ref.get(count: 2)
                        ref.put()
                        ref.put(count: 2)
                        operations.increment()
                    } else if confirmedBefore {
                        break
                    }
                }
            }
        }
        // Kill while the threads are in full swing (however slow the build:
        // sanitizers), at a different point each round.
        #expect(eventually(seconds: 60) { operations.value > 100 * (round + 1) })
        ref.kill { confirmed.open() }
        threads.forEach { $0.join() }
        MembarrierRCU.barrier()
        #expect(releases.value == 1)
        #expect(ref.isZero)
        #expect(liveAfterConfirm.value == 0, "tryGetLive succeeded after the kill was confirmed")
        #expect(operations.value > 100)
    }

    @Test("more live threads than per-thread counters, then recycled slots, keep the count exact")
    func moreThreadsThanCounters() {
        let releases = Counter()
        let ref = PercpuRef<MembarrierRCU> { releases.increment() }
        let threadCount = PercpuRef<MembarrierRCU>.perThreadCounters + 8
        let stragglers = Counter()
        /// Runs `body` on `threadCount` threads that all stay alive until
        /// every one has run it, so that they hold their slots at once.
        func wave(_ body: @escaping @Sendable (Int) -> Void) {
            let done = Counter()
            runThreads(threadCount) { index in
                body(index)
                done.increment()
                if !eventually(seconds: 60, { done.value == threadCount }) { stragglers.increment() }
            }
        }
        // All alive at once: 8 threads find no free slot and count on the
        // shared count. Each keeps index + 1 references.
        wave { index in
            for _ in 0..<200 { ref.get(); ref.put() }
            ref.get(count: index + 1)
        }
        // New threads, on the slots the first wave gave back, drop them.
        wave { index in ref.put(count: index + 1) }
        #expect(stragglers.value == 0)
        #expect(ref.abstractState.count == 1, "only the initial reference is left")
        #expect(ref.isPercpu)
        ref.kill()
        MembarrierRCU.barrier()
        #expect(releases.value == 1)
    }
}
