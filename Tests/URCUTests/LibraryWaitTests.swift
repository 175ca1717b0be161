import ContextTable
import PercpuRef
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Every wait the library performs, made from a registered, online QSBR
/// thread: the waiting thread must not hold up the grace period it waits
/// for. Each test runs in a child process of its own (the limit and the
/// registration are process wide), under an alarm: a wait that waits for
/// itself fails in seconds instead of hanging the suite.
@Suite("Library waits on an online QSBR thread")
struct LibraryWaitTests {
    /// Registers the calling thread with QSBR and arms the alarm.
    static func onlineQSBRThread(limit: Int?) {
        alarm(30)
        QuiescentStateRCU.registerThread()
        QuiescentStateRCU.pendingCallbackLimit = limit
    }

    /// Occupies the QSBR callback thread until `gate` opens: the first
    /// callback queued blocks it, so the limit stays reached.
    static func blockCallbackThread(until gate: Latch) {
        QuiescentStateRCU.call { gate.wait() }
    }

    // Each scenario runs in the child process of an exit test, on its main
    // thread (synchronous: these are the blocking forms), and says whether
    // it went right.

    static func backPressure() -> Bool {
        onlineQSBRThread(limit: 2)
        let ran = Counter()
        for _ in 0..<40 { QuiescentStateRCU.call { ran.increment() } }
        QuiescentStateRCU.barrier()
        return ran.value == 40
    }

    static func pointerAssign() -> Bool {
        onlineQSBRThread(limit: 1)
        let pointer = RCUPointer<Canary, QuiescentStateRCU>(Canary(0))
        for value in 1...30 { pointer.assign(Canary(value)) }
        QuiescentStateRCU.barrier()
        return QuiescentStateRCU.pendingCallbacks == 0
    }

    static func startPollNeverBlocks() -> Bool {
        onlineQSBRThread(limit: 1)
        let gate = Latch()
        blockCallbackThread(until: gate)
        let cookie = QuiescentStateRCU.startPoll()
        gate.open()
        return eventually(seconds: 20) {
            QuiescentStateRCU.quiescentState()
            return QuiescentStateRCU.poll(cookie)
        }
    }

    static func percpuRefKill() -> Bool {
        onlineQSBRThread(limit: 1)
        let released = Counter()
        let killed = PercpuRef<QuiescentStateRCU> { released.increment() }
        let switched = PercpuRef<QuiescentStateRCU>(options: .allowReinit) {}
        let gate = Latch()
        blockCallbackThread(until: gate)
        killed.kill()
        switched.switchToAtomic()
        gate.open()
        let settled = eventually(seconds: 20) {
            QuiescentStateRCU.quiescentState()
            return released.value == 1 && QuiescentStateRCU.pendingCallbacks == 0
        }
        // Already atomic: returns at once.
        switched.switchToAtomicSync()
        return settled && !switched.isPercpu
    }

    static func contextTableWait() -> Bool {
        onlineQSBRThread(limit: 1)
        let table = ContextTable<QuiescentStateRCU>(capacity: 4, requestBudget: 64)
        for _ in 0..<8 {
            let id = try! table.create(maxRequests: 4)
            try! table.destroy(id)
        }
        return table.waitForAll().isClean
    }

    static func fork() -> Bool {
        onlineQSBRThread(limit: nil)
        let ran = Counter()
        for _ in 0..<1_000 { QuiescentStateRCU.call { ran.increment() } }
        let child = forkProcess()
        if child == 0 {
            QuiescentStateRCU.barrier()
            _exit(ran.value == 1_000 ? 0 : 1)
        }
        QuiescentStateRCU.barrier()
        var status: Int32 = 0
        waitpid(child, &status, 0)
        return ran.value == 1_000 && status == 0
    }

    static func workerShutdown() -> Bool {
        onlineQSBRThread(limit: nil)
        let ran = Counter()
        for _ in 0..<5 {
            let worker = try! CallbackWorker<QuiescentStateRCU>()
            QuiescentStateRCU.withCallbackWorker(worker) {
                for _ in 0..<100 { QuiescentStateRCU.call { ran.increment() } }
            }
            worker.shutdown()
        }
        QuiescentStateRCU.createPerCPUCallbackWorkers()
        QuiescentStateRCU.call { ran.increment() }
        QuiescentStateRCU.removePerCPUCallbackWorkers()
        QuiescentStateRCU.barrier()
        return ran.value == 501
    }

    @Test("back-pressure: calls past the limit complete")
    func backPressure() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.backPressure() ? 0 : 1) }
    }

    @Test("back-pressure: RCUPointer.assign past the limit completes")
    func pointerAssign() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.pointerAssign() ? 0 : 1) }
    }

    @Test("startPoll() never blocks, even with the limit reached and no callback able to run")
    func startPollNeverBlocks() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.startPollNeverBlocks() ? 0 : 1) }
    }

    @Test("PercpuRef kill() and switchToAtomic() never block, and settle once callbacks run")
    func percpuRefKill() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.percpuRefKill() ? 0 : 1) }
    }

    @Test("ContextTable.waitForAll frees everything from an online QSBR thread")
    func contextTableWait() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.contextTableWait() ? 0 : 1) }
    }

    @Test("CallbackWorker.shutdown() and removing per-CPU workers")
    func workerShutdown() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.workerShutdown() ? 0 : 1) }
    }

    @Test("forkProcess() with QSBR callbacks in flight")
    func fork() async {
        await #expect(processExitsWith: .success) { exit(LibraryWaitTests.fork() ? 0 : 1) }
    }

    @Test("exit from an online QSBR thread runs its pending callback, and reports nothing")
    func exitFromOnlineThread() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            LibraryWaitTests.onlineQSBRThread(limit: nil)
            QuiescentStateRCU.call { _ = write(2, "callback ran\n", 13) }
            exit(0)
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("callback ran"), "stderr was: \(stderr)")
        #expect(!stderr.contains("had not run"), "stderr was: \(stderr)")
    }

    @Test("the exit drain waits for a callback that a callback of another flavor queues")
    func exitDrainCascade() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            alarm(30)
            QuiescentStateRCU.call {
                // Still running when exit starts its drain.
                usleep(200_000)
                MembarrierRCU.call {
                    BulletproofRCU.call { _ = write(2, "cascade ran\n", 12) }
                }
            }
            exit(0)
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("cascade ran"), "stderr was: \(stderr)")
        #expect(!stderr.contains("had not run"), "stderr was: \(stderr)")
    }
}
