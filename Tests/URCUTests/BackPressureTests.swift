import Testing
import URCU
import URCUTesting
import URCUTorture

#if canImport(Glibc)
import Glibc
#endif

/// Back-pressure on callback floods. The limit is per flavor and process
/// wide, so each test runs in a child process of its own (an exit test),
/// where it cannot slow down or block the other suites.
@Suite("Callback back-pressure")
struct BackPressureTests {
    @Test("with a limit, pending callbacks stay under it; without, a flood runs past it")
    func limitHolds() async {
        await #expect(processExitsWith: .success) {
            // Without a limit the producers outrun the callback thread, which
            // wakes every 10 ms: the check below can fail.
            let unlimited = CallbackFlood.run(MembarrierRCU.self, perThread: 100_000, limit: nil)
            let limited = CallbackFlood.run(MembarrierRCU.self, perThread: 100_000, limit: 1_000)
            // Each producer may pass the check once before the other's
            // enqueue is counted.
            let withinLimit = limited.peakPending <= 1_000 + 2 && limited.leftPending == 0
            exit(unlimited.peakPending > 1_000 && withinLimit ? 0 : 1)
        }
    }

    @Test("calls that cannot wait go through: inside a read section, on the callback thread")
    func callsThatCannotWait() async {
        await #expect(processExitsWith: .success) {
            // A deadlock here would otherwise hang the test.
            alarm(60)
            MembarrierRCU.pendingCallbackLimit = 1
            let gate = Latch()
            MembarrierRCU.read { _ in
                // The first callback blocks the callback thread, so the
                // limit stays reached while the section queues more.
                MembarrierRCU.call { gate.wait() }
                for _ in 0..<10 { MembarrierRCU.call {} }
            }
            gate.open()
            await MembarrierRCU.barrier()
            // The running callback counts as pending: its own calls find the
            // limit reached, and must not wait for themselves.
            await MembarrierRCU.call { for _ in 0..<10 { MembarrierRCU.call {} } }
            // A barrier waits for what was queued before it: the nested
            // calls need a second one.
            let drained = eventually(seconds: 30) { MembarrierRCU.barrier(); return MembarrierRCU.pendingCallbacks == 0 }
            exit(drained ? 0 : 1)
        }
    }

    /// More tasks than the cooperative pool has threads queue callbacks
    /// while the limit is reached and the callback thread is held up; the
    /// task that lets it go must still get a thread. Sleeping in a task
    /// would take every pool thread and never let it run.
    static func tasksNeverSleep(async: Bool) async -> Bool {
        alarm(30)
        MembarrierRCU.pendingCallbackLimit = 1
        let gate = Latch()
        await MembarrierRCU.call { gate.wait() }
        let ran = Counter()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<16 {
                group.addTask {
                    if async {
                        await MembarrierRCU.call { ran.increment() }
                    } else {
                        // A synchronous call made from a task never sleeps.
                        func queue() { MembarrierRCU.call { ran.increment() } }
                        queue()
                    }
                }
            }
            group.addTask {
                try? await Task.sleep(nanoseconds: 50_000_000)
                gate.open()
            }
        }
        await MembarrierRCU.barrier()
        await MembarrierRCU.barrier()
        return ran.value == 16 && MembarrierRCU.pendingCallbacks == 0
    }

    @Test("from tasks: `await call` suspends and a synchronous call never sleeps, so the pool keeps running")
    func tasks() async {
        await #expect(processExitsWith: .success) {
            exit(await BackPressureTests.tasksNeverSleep(async: true) ? 0 : 1)
        }
        await #expect(processExitsWith: .success) {
            exit(await BackPressureTests.tasksNeverSleep(async: false) ? 0 : 1)
        }
    }
}
