import Testing
import TestSupport
import URCU
import URCUTesting
import URCUTorture

/// The memory-region scenario of the torture run, briefly, on every flavor.
@Suite("Memory-region torture")
struct MemoryRegionTortureTests {
    @Test("lookups with plain gets race deregistrations; provoked timeouts recover; every region is freed, never under a reader")
    func everyFlavor() async {
        for flavor in allFlavors {
            // The run goes on until its timeout has been provoked and
            // recovered: a count, not a rate, so that it holds on a loaded
            // machine.
            let report = await offPool { MemoryRegionTorture.run(flavor, seconds: 0.3, timeouts: 1, timeLimit: 120) }
            #expect(report.errors.isEmpty, "\(report.flavor): \(report.errors)")
            #expect(report.timeoutsRecovered == 1, "\(report.flavor)")
            #expect(report.freed > 0 && report.freed == report.registered, "\(report.flavor)")
        }
    }
}
