import PercpuRef
import Testing
import URCU

/// Each PercpuRef misuse stops the process with a diagnostic naming it,
/// where the kernel would WARN.
@Suite("PercpuRef misuse")
struct PercpuRefMisuseTests {
    func expectDiagnostic(
        _ result: ExitTest.Result?, _ message: String, sourceLocation: SourceLocation = #_sourceLocation
    ) {
        let stderr = String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
        #expect(stderr.contains("swift-urcu misuse: PercpuRef: \(message)"), "stderr was: \(stderr)", sourceLocation: sourceLocation)
    }

    @Test func killTwice() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.get()
                ref.kill()
                ref.kill()
            },
            "kill() called on a ref that is already dead")
    }

    @Test func putBelowZero() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU>(options: .startAtomic) {}
                ref.put()
                ref.put()
            },
            "put() below zero")
    }

    @Test func putBelowZeroInPercpuMode() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.put()
                ref.put()
                ref.switchToAtomicSync()
            },
            "count is -1 after switching to atomic mode: more puts than gets in percpu mode")
    }

    @Test func resurrectLiveRef() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                PercpuRef<MembarrierRCU>(options: .allowReinit) {}.resurrect()
            },
            "resurrect() on a ref that is not dead")
    }

    @Test func reinitInUse() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU>(options: .allowReinit) {}
                ref.get()
                ref.kill()
                ref.reinit()
            },
            "reinit() on a ref whose count is not zero")
    }

    @Test func switchToPercpuWithoutAllowReinit() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU> {}
                ref.kill()
                MembarrierRCU.barrier()
                ref.reinit()
            },
            "switch to percpu mode on a ref created without .allowReinit")
    }

    @Test func useAfterExit() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let ref = PercpuRef<MembarrierRCU>(options: .startAtomic) {}
                ref.exit()
                ref.get()
            },
            "get() after exit()")
    }
}
