import PercpuRef
import Synchronization
import Testing
import URCU
import URCUTesting

/// A thread's exit moves its counters out of its area (the fold). It must
/// cost what the thread touched, not every ref in the process: short-lived
/// threads in a process with many refs.
@Suite("PercpuRef at thread exit")
struct ThreadExitTests {
    @Test func exitReadsThePagesTheThreadTouched() {
        let refCount = 20_000
        let refs = (0..<refCount).map { _ in PercpuRef<MembarrierRCU> {} }
        let used = refs[refCount / 2]
        let offsetsRead = Lock(0)
        JoinableThread {
            used.get()
            offsetsRead.withLock { $0 = CounterAreas.foldCallingThread() }
        }.join()
        // The fold kept the thread's reference.
        #expect(used.abstractState.count == 2)
        // Every offset in existence is at least `refCount`. The page the
        // thread wrote holds 256 offsets; switches and frees of other
        // tests meanwhile may have read a few more pages of its area.
        let read = offsetsRead.withLock { $0 }
        #expect(read <= refCount / 4, "the exit read \(read) offsets")
    }
}
