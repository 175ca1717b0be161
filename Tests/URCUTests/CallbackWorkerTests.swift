import Foundation
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Dedicated and per-CPU callback workers: where callbacks run, how workers
/// end (shut down, dropped), what they leave behind, and what happens when
/// the system has no thread to give them.
@Suite("Callback workers", .serialized)
struct CallbackWorkerTests {
    @Test("a dedicated callback worker runs callbacks on its own thread", arguments: allFlavors)
    func callbackWorker(flavor: any LiburcuFlavor.Type) throws {
        func check<F: LiburcuFlavor>(_: F.Type) throws {
            let worker = try CallbackWorker<F>()
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
        try check(flavor)
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
            var worker: CallbackWorker<F>? = try! CallbackWorker<F>()
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
        #expect(eventually(seconds: 10) { threadCount(named: site.rawValue) == 0 }, "the worker's thread is still running")
        #expect(eventually(seconds: 10) { ran.value == (site == .ownCallback ? 101 : 100) })
    }

    @Test("thread stays readable while shutdown() runs and after it")
    func threadDuringShutdown() async {
        await #expect(processExitsWith: .success) {
            let worker = try! CallbackWorker<MembarrierRCU>()
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
            await worker.shutdown()
            stop.open()
            reader.join()
            exit(mismatches.value == 0 && pthread_equal(worker.thread, expected) != 0 ? 0 : 1)
        }
    }

    /// The process's virtual memory size in KiB (`VmSize`).
    static func virtualMemoryKiB() -> Int {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        let line = status.split(separator: "\n").first { $0.hasPrefix("VmSize:") } ?? ""
        return Int(line.split(separator: " ").dropFirst().first ?? "") ?? 0
    }

    /// A bound on the address space `workers` stopped workers may leave
    /// mapped: a quarter of their thread stacks, which stay mapped in full
    /// when no one joins the threads (glibc keeps a few joined stacks for
    /// reuse, so it is not zero either).
    static func leakBoundKiB(workers: Int) -> Int {
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        var stackSize = 0
        pthread_attr_getstacksize(&attributes, &stackSize)
        pthread_attr_destroy(&attributes)
        return workers * stackSize / 1_024 / 4
    }

    @Test("200 workers created and shut down leave no thread stack mapped")
    func shutdownReleasesTheThread() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let before = CallbackWorkerTests.virtualMemoryKiB()
            // The blocking form, on this thread (see the per-CPU test).
            func createAndShutDown() { try! CallbackWorker<MembarrierRCU>().shutdown() }
            for _ in 0..<200 { createAndShutDown() }
            let growth = CallbackWorkerTests.virtualMemoryKiB() - before
            writeStandardError("VmSize grew by \(growth) KiB\n")
            exit(growth < CallbackWorkerTests.leakBoundKiB(workers: 200) ? 0 : 1)
        }
        print("200 workers: \(standardError(of: result))", terminator: "")
    }

    @Test("50 rounds of per-CPU workers created and removed leave no thread stack mapped")
    func perCPURemovalReleasesTheThreads() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let before = CallbackWorkerTests.virtualMemoryKiB()
            // The blocking form, on this thread: the async one waits on a
            // new thread each time, whose malloc arena alone adds to VmSize.
            func createAndRemove() {
                MembarrierRCU.createPerCPUCallbackWorkers()
                MembarrierRCU.removePerCPUCallbackWorkers()
            }
            for _ in 0..<50 { createAndRemove() }
            let growth = CallbackWorkerTests.virtualMemoryKiB() - before
            writeStandardError("VmSize grew by \(growth) KiB\n")
            let workers = 50 * Int(sysconf(Int32(_SC_NPROCESSORS_CONF)))
            exit(growth < CallbackWorkerTests.leakBoundKiB(workers: workers) ? 0 : 1)
        }
        print("50 per-CPU rounds: \(standardError(of: result))", terminator: "")
    }

    /// Makes every later `pthread_create` of this process fail with EAGAIN,
    /// as `ulimit -u` does. Root is exempt from RLIMIT_NPROC, so a root
    /// process also becomes user nobody, whose limit then applies. The
    /// process must then end with `_exit`: at `exit`, LeakSanitizer (the
    /// AddressSanitizer pass) needs a thread of its own, and without one
    /// fails the process.
    static func forbidNewThreads() {
        var limit = rlimit(rlim_cur: 1, rlim_max: 1)
        precondition(setrlimit(__rlimit_resource_t(__RLIMIT_NPROC.rawValue), &limit) == 0)
        if getuid() == 0 { precondition(setuid(65_534) == 0) }
        var thread = pthread_t()
        precondition(pthread_create(&thread, nil, { _ in nil }, nil) == EAGAIN, "the thread limit does not hold")
    }

    @Test("without a thread to spare, creating a worker throws")
    func workerWithoutThreads() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            CallbackWorkerTests.forbidNewThreads()
            do {
                _ = try CallbackWorker<MembarrierRCU>()
                _exit(1)
            } catch {
                writeStandardError("\(error)\n")
                _exit(0)
            }
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("Resource temporarily unavailable"), "stderr was: \(stderr)")
    }

    @Test("without threads to spare, per-CPU workers are refused")
    func perCPUWithoutThreads() async {
        await #expect(processExitsWith: .success) {
            CallbackWorkerTests.forbidNewThreads()
            _exit(MembarrierRCU.createPerCPUCallbackWorkers() ? 1 : 0)
        }
    }

    @Test("without a thread to spare, the first call() stops with a clear error")
    func firstCallWithoutThreads() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            CallbackWorkerTests.forbidNewThreads()
            await MembarrierRCU.call {}
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("swift-urcu: cannot start the memb callback thread"), "stderr was: \(stderr)")
        #expect(stderr.contains("Resource temporarily unavailable"), "stderr was: \(stderr)")
    }
}

/// Workers across `forkProcess()`: liburcu frees every worker but a new
/// default one in the child. Exit tests (the process forks again); the
/// ThreadSanitizer pass skips them with the other fork tests.
@Suite("Callback workers across fork()")
struct CallbackWorkerForkTests {
    /// Waits for `child` (which bounds itself with `alarm`) and tells
    /// whether it exited with status 0.
    static func exitedCleanly(_ child: pid_t) -> Bool {
        var status: Int32 = 0
        guard child > 0, waitpid(child, &status, 0) == child else { return false }
        return (status & 0x7F) == 0 && ((status >> 8) & 0xFF) == 0
    }

    static func staleWorkerShutdown() -> Never {
        alarm(60)
        typealias F = MembarrierRCU
        let shutDown = try! CallbackWorker<F>()
        var dropped: CallbackWorker<F>? = try! CallbackWorker<F>()
        F.withCallbackWorker(shutDown) { F.call {} }
        F.withCallbackWorker(dropped!) { F.call {} }
        F.barrier()
        let child = forkProcess()
        if child == 0 {
            alarm(20)
            // liburcu freed both at the fork: neither may be freed again.
            shutDown.shutdown()
            dropped = nil
            let fresh = try! CallbackWorker<F>()
            let ran = Counter()
            F.withCallbackWorker(fresh) { F.call { ran.increment() } }
            F.barrier()
            fresh.shutdown()
            _exit(ran.value == 1 ? 0 : 1)
        }
        // The parent's workers are intact.
        let ran = Counter()
        F.withCallbackWorker(shutDown) { F.call { ran.increment() } }
        F.barrier()
        shutDown.shutdown()
        dropped = nil
        exit(CallbackWorkerForkTests.exitedCleanly(child) && ran.value == 1 ? 0 : 1)
    }

    static func staleWorkerUse() -> Never {
        alarm(60)
        let worker = try! CallbackWorker<MembarrierRCU>()
        MembarrierRCU.withCallbackWorker(worker) { MembarrierRCU.call {} }
        MembarrierRCU.barrier()
        let child = forkProcess()
        if child == 0 {
            alarm(20)
            MembarrierRCU.withCallbackWorker(worker) { MembarrierRCU.call {} }
            MembarrierRCU.barrier()
            _exit(0)  // Not reached: the child stops first.
        }
        var status: Int32 = 0
        waitpid(child, &status, 0)
        worker.shutdown()
        // The child must have died of the diagnostic, not exited.
        exit((status & 0x7F) != 0 ? 0 : 1)
    }

    static func forkInScopes() -> Never {
        alarm(60)
        typealias F = MembarrierRCU
        let outer = try! CallbackWorker<F>(), inner = try! CallbackWorker<F>()
        var child: pid_t = -1
        F.withCallbackWorker(outer) {
            F.withCallbackWorker(inner) { child = forkProcess() }
            if child == 0 {
                alarm(20)
                // Back in the outer scope, whose worker the fork freed:
                // the callback must go to the child's default worker.
                let ran = Counter()
                F.call { ran.increment() }
                F.barrier()
                _exit(ran.value == 1 && !F.isCallbackThread ? 0 : 1)
            }
        }
        outer.shutdown()
        inner.shutdown()
        exit(CallbackWorkerForkTests.exitedCleanly(child) ? 0 : 1)
    }

    @Test("a worker from before the fork can be shut down or dropped in the child, and new workers work there")
    func staleWorkerShutdownIsSafe() async {
        await #expect(processExitsWith: .success) {
            CallbackWorkerForkTests.staleWorkerShutdown()
        }
    }

    @Test("a worker from before the fork used in the child is diagnosed")
    func staleWorkerUseIsDiagnosed() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            CallbackWorkerForkTests.staleWorkerUse()
        }
        expectDiagnostic(result, "memb: CallbackWorker used in a child process of forkProcess()")
    }

    @Test("forking inside nested withCallbackWorker scopes leaves the child's callbacks on its default worker")
    func forkInsideScopes() async {
        await #expect(processExitsWith: .success) {
            CallbackWorkerForkTests.forkInScopes()
        }
    }
}
