import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Clean shutdown: callbacks queued at exit run or are reported, and
/// callback workers leave no thread behind.
@Suite("Shutdown")
struct ShutdownTests {
    @Test("callbacks still queued at exit run before the process ends")
    func queuedCallbacksRunAtExit() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let ran = Counter()
            let total = 200
            for _ in 0..<total {
                MembarrierRCU.call {
                    usleep(500)
                    ran.increment()
                    if ran.value == total { _ = "all \(total) ran\n".withCString { write(2, $0, strlen($0)) } }
                }
            }
            exit(0)
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("all 200 ran"), "stderr was: \(stderr)")
        #expect(!stderr.contains("had not run at exit"), "stderr was: \(stderr)")
    }

    @Test("callbacks that cannot run by the deadline are reported, with their count")
    func stuckCallbacksAreReported() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            RCUStallMonitor.threshold = nil
            RCUExit.drainTimeout = 0.3
            let inside = Latch()
            // A reader that never leaves: no grace period can end.
            _ = JoinableThread(name: "stuck-reader") { MembarrierRCU.read { _ in inside.open(); pause() } }
            inside.wait()
            for _ in 0..<7 { MembarrierRCU.call {} }
            exit(0)
        }
        let stderr = standardError(of: result)
        // The drain waits its 0.3 s; a loaded machine may take longer to
        // notice the deadline, never less.
        let prefix = "swift-urcu: 7 memb callbacks had not run at exit (waited "
        let waited = stderr.range(of: prefix).flatMap { Double(stderr[$0.upperBound...].prefix { $0 != " " }) }
        #expect(waited.map { $0 >= 0.3 && $0 < 5 } == true, "stderr was: \(stderr)")
    }

    @Test("barrier, then shutting workers down, leaves no thread behind")
    func workersLeaveNoThread() async {
        await #expect(processExitsWith: .success) {
            // liburcu's worker threads take the name of the thread that
            // creates them: create them from one named for the purpose.
            let name = "rcu-workers"
            // The default callback thread, which creating a worker starts if
            // it is not running, stays: start it from this thread.
            await MembarrierRCU.call {}
            nonisolated(unsafe) var worker: CallbackWorker<MembarrierRCU>?
            nonisolated(unsafe) var perCPU = false
            JoinableThread(name: name) {
                worker = try! CallbackWorker<MembarrierRCU>()
                perCPU = MembarrierRCU.createPerCPUCallbackWorkers()
            }.join()
            let workers = threadCount(named: name)
            let ran = Counter()
            MembarrierRCU.withCallbackWorker(worker!) {
                for _ in 0..<1_000 { MembarrierRCU.call { ran.increment() } }
            }
            for _ in 0..<1_000 { await MembarrierRCU.call { ran.increment() } }
            await MembarrierRCU.barrier()
            await worker!.shutdown()
            await MembarrierRCU.removePerCPUCallbackWorkers()
            let gone = eventually(seconds: 10) { threadCount(named: name) == 0 }
            // One dedicated worker, and one per CPU.
            let expected = 1 + (perCPU ? Int(sysconf(Int32(_SC_NPROCESSORS_CONF))) : 0)
            exit(ran.value == 2_000 && workers == expected && gone ? 0 : 1)
        }
    }
}
