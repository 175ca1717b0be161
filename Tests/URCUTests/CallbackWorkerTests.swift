import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Dedicated and per-CPU callback workers: where callbacks run, and how
/// workers end (shut down, dropped).
@Suite("Callback workers", .serialized)
struct CallbackWorkerTests {
    @Test("a dedicated callback worker runs callbacks on its own thread", arguments: allFlavors)
    func callbackWorker(flavor: any LiburcuFlavor.Type) {
        func check<F: LiburcuFlavor>(_: F.Type) {
            let worker = CallbackWorker<F>()
            let workerThread = worker.thread
            let ranOnWorker = Atomic<Int>(0)
            F.withCallbackWorker(worker) {
                for _ in 0..<100 {
                    F.call {
                        if pthread_equal(pthread_self(), workerThread) != 0 {
                            ranOnWorker.wrappingAdd(1, ordering: .relaxed)
                        }
                        if !F.isCallbackThread { ranOnWorker.wrappingAdd(1_000_000, ordering: .relaxed) }
                    }
                }
            }
            F.barrier()
            #expect(ranOnWorker.load(ordering: .relaxed) == 100)
            worker.shutdown()
            #expect(!F.isCallbackThread)
        }
        check(flavor)
    }

    @Test("per-CPU callback workers run callbacks, and removing them loses none", arguments: allFlavors)
    func perCPUWorkers(flavor: any LiburcuFlavor.Type) {
        func check<F: LiburcuFlavor>(_: F.Type) {
            #expect(F.createPerCPUCallbackWorkers())
            #expect(F.hasCallbackWorker(forCPU: 0))
            let ran = Atomic<Int>(0)
            let gate = Latch()
            // Some run before the workers go away, some are still queued
            // when they do: those move to the default worker.
            runThreads(2) { _ in
                for _ in 0..<500 { F.call { gate.wait(); ran.wrappingAdd(1, ordering: .relaxed) } }
            }
            gate.open()
            F.removePerCPUCallbackWorkers()
            #expect(!F.hasCallbackWorker(forCPU: 0))
            F.barrier()
            #expect(ran.load(ordering: .relaxed) == 1_000)
        }
        check(flavor)
    }

    /// Where the last reference to a worker that was never shut down goes
    /// away.
    enum DropSite: String, CaseIterable, CustomTestStringConvertible {
        /// A thread that may block: the worker is shut down there.
        case plainThread = "drop-plain"
        /// Inside a read section, where a grace period would wait for itself.
        case readSection = "drop-in-read"
        /// In a callback running on the worker itself, which cannot wait for
        /// its own thread to stop.
        case ownCallback = "drop-in-own-cb"

        var testDescription: String { rawValue }
    }

    @Test("a worker dropped without shutdown() stops its thread, and its queued callbacks still run", arguments: DropSite.allCases)
    func droppedWorkerStopsItsThread(site: DropSite) {
        typealias F = MembarrierRCU
        let ran = Counter()
        // liburcu's worker threads take the name of the thread that creates
        // them: one named after the case finds this test's worker. Threads
        // the package starts on first use and keeps (the default callback
        // thread, the stall watchdog) start from this thread instead.
        F.call {}
        F.synchronize()
        JoinableThread(name: site.rawValue) {
            var worker: CallbackWorker<F>? = CallbackWorker<F>()
            F.withCallbackWorker(worker!) {
                for _ in 0..<100 { F.call { ran.increment() } }
            }
            switch site {
            case .plainThread:
                worker = nil
            case .readSection:
                F.read { _ in worker = nil }
            case .ownCallback:
                // The callback's closure holds the last reference: it is
                // released on the worker's thread once the callback has run.
                let released = Latch()
                F.withCallbackWorker(worker!) { [worker] in
                    F.call { released.wait(); _ = worker; ran.increment() }
                }
                worker = nil
                released.open()
            }
        }.join()
        #expect(eventually(seconds: 10) { ShutdownTests.threads(named: site.rawValue) == 0 }, "the worker's thread is still running")
        #expect(eventually(seconds: 10) { ran.value == (site == .ownCallback ? 101 : 100) })
    }

    @Test("thread stays readable while shutdown() runs and after it")
    func threadDuringShutdown() async {
        await #expect(processExitsWith: .success) {
            let worker = CallbackWorker<MembarrierRCU>()
            let expected = worker.thread
            let started = Latch(), stop = Latch()
            let mismatches = Counter()
            let reader = JoinableThread {
                started.open()
                while !stop.isOpen {
                    if pthread_equal(worker.thread, expected) == 0 { mismatches.increment() }
                }
            }
            started.wait()
            worker.shutdown()
            stop.open()
            reader.join()
            exit(mismatches.value == 0 && pthread_equal(worker.thread, expected) != 0 ? 0 : 1)
        }
    }
}
