import Dispatch
import Synchronization
import PercpuRef
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// `RCUQuiescence.wait()`: everything torn down so far is really freed,
/// however many grace periods, flavors and executors the teardown crosses.
@Suite("Quiescence")
struct QuiescenceTests {
    static let refs = 16

    /// Kills `refs` percpu refs whose release starts a chain: a memb grace
    /// period, blocking work on a queue, a bp callback, an mb grace period
    /// and work on another queue (or in a task on `taskExecutor`), which
    /// counts the ref as freed. No single barrier covers it: the refs'
    /// switches end in memb callbacks, whose releases queue more.
    static func tearDownChains(freed: Counter, taskExecutor: (any TaskExecutor)? = nil) -> [PercpuRef<MembarrierRCU>] {
        let first = DispatchQueue(label: "urcu.test.quiescence.first")
        let last = DispatchQueue(label: "urcu.test.quiescence.last")
        let refs = (0..<Self.refs).map { _ in
            PercpuRef<MembarrierRCU> {
                MembarrierRCU.afterGracePeriod(on: first) {
                    usleep(2_000)
                    BulletproofRCU.call {
                        if let taskExecutor {
                            MemoryBarrierRCU.afterGracePeriod(on: taskExecutor) { freed.increment() }
                        } else {
                            MemoryBarrierRCU.afterGracePeriod(on: last) { freed.increment() }
                        }
                    }
                }
            }
        }
        for ref in refs { ref.kill() }
        return refs
    }

    @Test("wait() returns once every chain of grace periods, callbacks and executor work has ended")
    func blockingWait() async {
        let freed = Counter()
        let freedAtReturn = await offPool {
            let refs = Self.tearDownChains(freed: freed)
            RCUQuiescence.wait()
            return withExtendedLifetime(refs) { freed.value }
        }
        #expect(freedAtReturn == Self.refs, "wait() returned with \(Self.refs - freedAtReturn) chains unfinished")
    }

    @Test("await wait() suspends until the chains have ended, work in tasks included")
    func asyncWait() async {
        let freed = Counter()
        let executor = QueueExecutor(label: "urcu.test.quiescence.tasks")
        let refs = Self.tearDownChains(freed: freed, taskExecutor: executor)
        await RCUQuiescence.wait()
        #expect(freed.value == Self.refs, "wait() returned with \(Self.refs - freed.value) chains unfinished")
        withExtendedLifetime(refs) {}
    }

    @Test("an online QSBR thread may wait: it goes offline meanwhile")
    func qsbrThreadWaits() async {
        let freed = Counter()
        let freedAtReturn = await offPool {
            QuiescentStateRCU.registerThread()
            defer { QuiescentStateRCU.unregisterThread() }
            QuiescentStateRCU.afterGracePeriod(on: DispatchQueue.global()) { freed.increment() }
            RCUQuiescence.wait()
            return freed.value
        }
        #expect(freedAtReturn == 1)
    }

    @Test("waiting inside a read section or from a callback is diagnosed")
    func misuse() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                MembarrierRCU.read { _ in RCUQuiescence.wait() }
            },
            "RCUQuiescence.wait() called inside a read section of memb or from one of its callbacks")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                await BulletproofRCU.call { RCUQuiescence.wait() }
                await BulletproofRCU.barrier()
            },
            "RCUQuiescence.wait() called inside a read section of bp or from one of its callbacks")
    }
}
