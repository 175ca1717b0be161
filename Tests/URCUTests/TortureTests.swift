import Testing
import URCU
import URCUTesting
import TestSupport
import URCUTorture

/// The grace-period torture, briefly, on every flavor; and a broken updater
/// to show the readers' check catches a grace period that does not wait.
@Suite("Grace-period torture")
struct TortureTests {
    @Test("readers never see an element older than one grace period", arguments: allFlavors)
    func torture(flavor: any LiburcuFlavor.Type) async {
        func check<F: RCUFlavor>(_: F.Type) async {
            // The updater waits on a task for one of its mechanisms: keep
            // this test's own blocking off the cooperative pool.
            let report = await offPool { GracePeriodTorture.run(F.self, seconds: 1, minimumUpdates: 20) }
            #expect(report.errors == 0)
            // Thousands of reads, even under ThreadSanitizer.
            #expect(report.reads > 1_000)
            #expect(report.updates >= 20)
            // All five mechanisms took part.
            #expect(report.gracePeriods.count == 5, "\(report.gracePeriods)")
            #expect(report.pipeHistogram.dropFirst(2).allSatisfy { $0 == 0 })
        }
        await check(flavor)
    }

    @Test("the context lifecycle torture frees everything, never under a reader")
    func lifecycle() async {
        // A second, then on until 50 contexts were created: a count, not a
        // rate, so that it holds on a loaded machine.
        let report = await offPool {
            LifecycleTorture.run(MembarrierRCU.self, seconds: 1, minimumCreated: 50, timeLimit: 120)
        }
        #expect(report.errors.isEmpty, "\(report.errors)")
        #expect(report.statistics.created >= 50)
        #expect(report.statistics.freed == report.statistics.created)
    }

    @Test("an updater that skips the grace period is caught")
    func negativeControl() async {
        let report = await offPool { GracePeriodTorture.run(MembarrierRCU.self, seconds: 0.5, waiting: .skipped) }
        #expect(report.errors > 0)
    }
}
