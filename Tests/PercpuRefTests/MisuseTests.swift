import PercpuRef
import Testing
import URCU
import TestSupport

/// Each PercpuRef misuse stops the process with a diagnostic naming it,
/// where the kernel would WARN.
@Suite("PercpuRef misuse")
struct PercpuRefMisuseTests {
    @Test func killTwice() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.get()
                ref.kill()
                ref.kill()
            },
            "PercpuRef: kill() called on a ref that is already dead")
    }

    @Test func putBelowZero() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU>(options: .startAtomic) {}
                ref.put()
                ref.put()
            },
            "PercpuRef: put() below zero")
    }

    @Test func putBelowZeroInPercpuMode() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.put()
                ref.put()
                await ref.switchToAtomicSync()
            },
            "PercpuRef: count is -1 after switching to atomic mode: more puts than gets in percpu mode")
    }

    @Test func resurrectLiveRef() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                PercpuRef<MembarrierRCU>(options: .allowReinit) {}.resurrect()
            },
            "PercpuRef: resurrect() on a ref that is not dead")
    }

    @Test func reinitInUse() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU>(options: .allowReinit) {}
                ref.get()
                ref.kill()
                ref.reinit()
            },
            "PercpuRef: reinit() on a ref whose count is not zero")
    }

    @Test func switchToPercpuWithoutAllowReinit() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.kill()
                await MembarrierRCU.barrier()
                ref.reinit()
            },
            "PercpuRef: switch to percpu mode on a ref created without .allowReinit")
    }

    @Test func useAfterExit() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU>(options: .startAtomic) {}
                ref.exit()
                ref.get()
            },
            "PercpuRef: get() after exit()")
    }

    @Test func getOnReleasedRef() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.kill()
                await MembarrierRCU.barrier()
                ref.get()
            },
            "PercpuRef: get() on a ref whose count is zero (already released)")
    }

    @Test func negativeCount() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                PercpuRef<MembarrierRCU> {}.get(count: -1)
            },
            "PercpuRef: reference count operation with count -1")
    }

    @Test func qsbrRefOnUnprotectedThread() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<QuiescentStateRCU> {}
                ref.get()
            },
            "qsbr: read section on a thread that is not registered")
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<QuiescentStateRCU> {}
                QuiescentStateRCU.registerThread()
                QuiescentStateRCU.threadOffline()
                ref.put()
            },
            "qsbr: read section on an offline thread")
    }

    /// A thread that has counted while online has its area where the fast
    /// path finds it together with the online check; every way of going
    /// offline or unregistering must take it away, or the next get would
    /// count unchecked.
    @Test(arguments: LeavingOnline.allCases)
    func qsbrRefAfterCountingOnline(leaving: LeavingOnline) async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) { [leaving] in
                let ref = PercpuRef<QuiescentStateRCU> {}
                switch leaving {
                case .threadOffline:
                    QuiescentStateRCU.registerThread()
                    ref.get()
                    QuiescentStateRCU.threadOffline()
                    ref.put()
                case .whileOffline:
                    QuiescentStateRCU.registerThread()
                    ref.get()
                    QuiescentStateRCU.whileOffline { ref.put() }
                case .unregisterThread:
                    QuiescentStateRCU.registerThread()
                    ref.get()
                    QuiescentStateRCU.unregisterThread()
                    ref.put()
                case .withRegisteredThreadEnds:
                    QuiescentStateRCU.withRegisteredThread { ref.get() }
                    ref.put()
                case .withRegisteredThreadOnOfflineThreadEnds:
                    QuiescentStateRCU.registerThread()
                    QuiescentStateRCU.threadOffline()
                    QuiescentStateRCU.withRegisteredThread { ref.get() }
                    ref.put()
                }
            },
            leaving.diagnostic)
    }

    /// The ways a QSBR thread that counted online stops being online.
    enum LeavingOnline: String, CaseIterable, Codable, Sendable {
        case threadOffline, whileOffline, unregisterThread
        /// `withRegisteredThread` on an unregistered thread, which it
        /// unregisters at the end.
        case withRegisteredThreadEnds
        /// `withRegisteredThread` on a registered offline thread, which it
        /// leaves offline at the end.
        case withRegisteredThreadOnOfflineThreadEnds

        var diagnostic: String {
            switch self {
            case .threadOffline, .whileOffline, .withRegisteredThreadOnOfflineThreadEnds:
                "qsbr: read section on an offline thread"
            case .unregisterThread, .withRegisteredThreadEnds:
                "qsbr: read section on a thread that is not registered"
            }
        }
    }
}
