import Testing
import URCU
import URCUTesting
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Each misuse stops the process with a diagnostic that names it. Exit tests
/// run the body in a child process and check how it ended and what it said.
@Suite("Misuse diagnostics")
struct MisuseTests {
    @Test func synchronizeInsideReadSection() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                MembarrierRCU.read { _ in MembarrierRCU.synchronize() }
            },
            "memb: synchronize() called inside a read section")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                MemoryBarrierRCU.read { _ in MemoryBarrierRCU.synchronize() }
            },
            "mb: synchronize() called inside a read section")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                BulletproofRCU.read { _ in BulletproofRCU.synchronize() }
            },
            "bp: synchronize() called inside a read section")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.read { _ in QuiescentStateRCU.synchronize() }
            },
            "qsbr: synchronize() called inside a read section")
    }

    @Test func barrierInsideReadSection() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                MembarrierRCU.read { _ in MembarrierRCU.barrier() }
            },
            "memb: barrier() called inside a read section")
    }

    @Test func barrierFromCallback() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                await MembarrierRCU.call { MembarrierRCU.barrier() }
                await MembarrierRCU.barrier()
            },
            "memb: barrier() called from a call_rcu callback")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                await QuiescentStateRCU.call { QuiescentStateRCU.barrier() }
                await QuiescentStateRCU.barrier()
            },
            "qsbr: barrier() called from a call_rcu callback")
    }

    @Test func qsbrReadOnUnregisteredThread() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.read { _ in }
            },
            "qsbr: read section on a thread that is not registered")
    }

    @Test func qsbrReadOnOfflineThread() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.whileOffline { QuiescentStateRCU.read { _ in } }
            },
            "qsbr: read section on an offline thread")
    }

    @Test func qsbrRegisterTwice() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.registerThread()
            },
            "qsbr: registerThread() called twice")
    }

    @Test func qsbrQuiescentStateInsideReadSection() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.read { _ in QuiescentStateRCU.quiescentState() }
            },
            "qsbr: quiescentState() inside a read section")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.quiescentState()
            },
            "qsbr: quiescentState() on a thread that is not registered")
    }

    @Test func workerShutdownTwice() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let worker = try! CallbackWorker<MembarrierRCU>()
                await worker.shutdown()
                await worker.shutdown()
            },
            "memb: CallbackWorker.shutdown() called twice")
    }

    // QSBR's read-side checks hold in every build (the default trait
    // QSBRReadSideChecks), not only in debug builds.

    @Test func qsbrGoingOfflineInsideReadSection() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.read { _ in QuiescentStateRCU.threadOffline() }
            },
            "qsbr: threadOffline() inside a read section")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.read { _ in QuiescentStateRCU.whileOffline {} }
            },
            "qsbr: threadOffline() inside a read section")
    }

    @Test func qsbrBarrierInsideReadSection() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.read { _ in QuiescentStateRCU.barrier() }
            },
            "qsbr: barrier() called inside a read section")
    }

    @Test func qsbrThreadExitsRegistered() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                JoinableThread { QuiescentStateRCU.registerThread() }.join()
            },
            "qsbr: a thread exited while registered")
    }

    @Test func workerShutdownFromItsOwnCallback() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                alarm(10)  // A hang ends in SIGALRM, without the diagnostic.
                let worker = try! CallbackWorker<MembarrierRCU>()
                MembarrierRCU.withCallbackWorker(worker) { MembarrierRCU.call { worker.shutdown() } }
                pause()
            },
            "memb: CallbackWorker.shutdown() called from a callback running on that worker")
    }
}
