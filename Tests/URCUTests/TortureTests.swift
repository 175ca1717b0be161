import Testing
import URCU
import URCUTesting
import TestSupport
import URCUTorture

#if canImport(Glibc)
import Glibc
#endif

/// The grace-period torture, briefly, in every cell of its matrix (flavor x
/// mode x callback workers); the lifecycle torture; and broken updaters in
/// each callback-worker configuration, to show the readers' check catches a
/// grace period that does not wait.
@Suite("Torture")
struct TortureTests {
    typealias Mode = GracePeriodTorture.Mode
    typealias CallbackWorkers = GracePeriodTorture.CallbackWorkers

    /// A tenth of a second, then until every mechanism has completed two
    /// grace periods and the readers have made a thousand reads: counts, so
    /// that a loaded machine makes a cell longer, not a check fail. The time
    /// limit only ends a stalled cell.
    static let brief = GracePeriodTorture.Goal(seconds: 0.1, minimumReads: 1_000, gracePeriodsPerMechanism: 2, timeLimit: 120)

    /// Runs every mode of `flavor` with `workers`, one cell after another.
    static func cells(_ flavor: any LiburcuFlavor.Type, _ workers: CallbackWorkers) -> [TortureReport] {
        func run<F: LiburcuFlavor>(_: F.Type) -> [TortureReport] {
            Mode.allCases.map { GracePeriodTorture.run(F.self, mode: $0, callbackWorkers: workers, goal: brief) }
        }
        return run(flavor)
    }

    /// A cell whose updaters skip the grace period. It ends at the first
    /// error the readers catch; a minute without one fails the test.
    static func brokenCell(_ mode: Mode, _ workers: CallbackWorkers) -> TortureReport {
        GracePeriodTorture.run(
            MembarrierRCU.self, mode: mode, callbackWorkers: workers, goal: .init(seconds: 60, timeLimit: 60),
            waiting: .skipped)
    }

    @Test("every mode, with the default worker and with per-thread workers", arguments: allFlavors)
    func matrix(flavor: any LiburcuFlavor.Type) async {
        // The updaters wait on their own queues and executors: keep this
        // test's blocking off the cooperative pool all the same.
        let reports = await offPool { TortureTests.cells(flavor, .global) + TortureTests.cells(flavor, .perThread) }
        #expect(reports.count == 6)
        for report in reports {
            #expect(report.problems.isEmpty, "\(report.cell): \(report.problems)")
        }
    }

    @Test("every mode, with per-CPU workers (process-wide: in a child process)", arguments: allFlavors.map { $0.name })
    func perCPUMatrix(flavorName: String) async {
        await #expect(processExitsWith: .success) { [flavorName] in
            let flavor = allFlavors.first { $0.name == flavorName }!
            let reports = TortureTests.cells(flavor, .perCPU)
            // Recorded in the parent, with the cell and its problems.
            for report in reports {
                #expect(report.problems.isEmpty, "\(report.cell): \(report.problems)")
            }
            exit(reports.allSatisfy(\.problems.isEmpty) ? 0 : 1)
        }
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

    @Test("updaters that skip the grace period are caught, with every kind of callback worker",
          arguments: zip(Mode.allCases, CallbackWorkers.allCases))
    func negativeControl(mode: Mode, workers: CallbackWorkers) async {
        guard workers == .perCPU else {
            let report = await offPool { TortureTests.brokenCell(mode, workers) }
            #expect(report.errors > 0, "\(report.cell): \(report.problems)")
            // Every error is in the histogram, beyond 1.
            #expect(report.pipeHistogram.dropFirst(2).reduce(0, +) == report.errors, "\(report.pipeHistogram)")
            return
        }
        await #expect(processExitsWith: .success) { [modeName = mode.rawValue as String] in
            let report = TortureTests.brokenCell(Mode(rawValue: modeName)!, .perCPU)
            #expect(report.errors > 0, "\(report.cell): \(report.problems)")
            exit(report.errors > 0 ? 0 : 1)
        }
    }
}
