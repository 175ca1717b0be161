import PercpuRef
import Synchronization
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

    @Test("refs created when no offset is left count on their shared count, exactly")
    func refsWithoutOffsets() async {
        // In a process of its own: the limit is process-wide.
        await #expect(processExitsWith: .success) {
            CounterAreas.limitOffsets(to: 1)
            let releases = Counter()
            // The first takes the one offset; the others count on their
            // shared count in percpu mode.
            let refs = (0..<3).map { _ in PercpuRef<MembarrierRCU> { releases.increment() } }
            runThreads(4) { _ in
                for ref in refs {
                    for _ in 0..<1_000 { ref.get(); ref.put() }
                    ref.get(count: 2)
                    #expect(ref.tryGet() && ref.tryGetLive())
                    ref.put(count: 3)
                }
            }
            for ref in refs {
                #expect(ref.isPercpu)
                #expect(ref.abstractState.count == 5, "the initial reference and one per thread")
                ref.put(count: 4)
                ref.kill()
            }
            await MembarrierRCU.barrier()
            #expect(releases.value == refs.count)
        }
    }

    @Test("256 threads leave counts on refs that outlive them; refs that come and go reuse offsets clean")
    func foldAndOffsetReuse() {
        let releases = Counter()
        let refs = (0..<16).map { _ in PercpuRef<MembarrierRCU> { releases.increment() } }
        let threadCount = 256
        // Two threads that never exit while the others come and go: each
        // creates refs, leaves counts in its area at their offsets, and
        // drops them. A fresh ref on a reused offset whose counters were not
        // zeroed shows a count other than 1.
        let stop = Atomic<Bool>(false)
        let freshRefs = Counter(), dirtyOffsets = Counter()
        let churners = (0..<2).map { _ in
            JoinableThread {
                while !stop.load(ordering: .relaxed) {
                    let ref = PercpuRef<MembarrierRCU> {}
                    if ref.abstractState.count != 1 { dirtyOffsets.increment() }
                    ref.get(count: 5)
                    ref.put(count: 3)
                    freshRefs.increment()
                }
            }
        }
        // Each short-lived thread keeps one reference on every long-lived
        // ref, with gets and puts on both sides of it, and exits: its
        // counters must be folded, not lost. It also drops refs of its own
        // with counts left on them, for the churners to reuse.
        runThreads(threadCount) { index in
            for ref in refs {
                ref.get(count: 2 + index % 3)
                ref.put(count: 1 + index % 3)
            }
            for _ in 0..<4 {
                let own = PercpuRef<MembarrierRCU> {}
                own.get(count: 7)
                own.put()
            }
        }
        #expect(eventually(seconds: 60) { freshRefs.value > 100 })
        stop.store(true, ordering: .relaxed)
        churners.forEach { $0.join() }
        #expect(dirtyOffsets.value == 0, "fresh refs whose reused offset still held counts")
        for ref in refs {
            #expect(ref.abstractState.count == 1 + threadCount, "the exited threads' references, folded, and the initial one")
            ref.put(count: threadCount)
            ref.kill()
        }
        MembarrierRCU.barrier()
        #expect(releases.value == refs.count, "each ref released once its exited threads' references were put")
        let notZero = refs.filter { !$0.isZero }.count
        #expect(notZero == 0)
    }
}
