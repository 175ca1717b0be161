import PercpuRef
import Synchronization
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

    @Test("many threads (more than per-thread counters) keep the count exact")
    func moreThreadsThanCounters() {
        let releases = Counter()
        let ref = PercpuRef<MembarrierRCU> { releases.increment() }
        let threads = (0..<(PercpuRef<MembarrierRCU>.perThreadCounters + 8)).map { index in
            JoinableThread {
                // Unbalanced on purpose: each thread takes a reference that
                // another thread drops below.
                for _ in 0..<200 { ref.get(); ref.put() }
                ref.get(count: index + 1)
            }
        }
        threads.forEach { $0.join() }
        let total = threads.indices.reduce(0) { $0 + $1 + 1 }
        ref.switchToAtomicSync()
        ref.put(count: total)
        #expect(releases.value == 0)
        ref.kill()
        MembarrierRCU.barrier()
        #expect(releases.value == 1)
    }
}
