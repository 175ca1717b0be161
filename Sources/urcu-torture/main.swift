// The torture run: the library on real threads for a bounded time, with
// progress while it runs and a summary at the end. Exits non-zero on any
// error. `make torture` runs it; `urcu-torture --help` lists the options.
//
// Three suites share the time: the seeds' context lifecycle (ContextTable
// over PercpuRef and RCU) and the RDMAVT memory regions (MemoryRegionTable)
// share one half; the grace-period torture (rcutorture's pipe count), a
// matrix of flavor x mode x call_rcu workers, has the other.

import ContextTable
import MemoryRegions
import URCU
import URCUTorture

#if canImport(Glibc)
import Glibc
#endif

typealias Mode = GracePeriodTorture.Mode
typealias CallbackWorkers = GracePeriodTorture.CallbackWorkers

struct Options {
    var seconds = 20.0
    var readers = 2
    var flavors = ["memb", "qsbr", "mb", "bp"]
    var modes = Mode.allCases
    var callbackWorkers = CallbackWorkers.allCases
    var suites = ["lifecycle", "memory-regions", "grace-periods"]
    var floodCallbacks = 10_000_000
}

/// The shortest time a grace-period cell runs (set-up and tear-down not
/// counted): below it, the run leaves cells out rather than thin them.
let minimumCellSeconds = 0.25

func usage() -> Never {
    print("""
        usage: urcu-torture [--seconds S] [--readers N] [--flavor F,...] [--mode M,...]
                            [--callrcu W,...] [--suite lifecycle|memory-regions|grace-periods|all|flood]
                            [--callbacks N]
          --seconds S   total duration (default 20): a quarter to the lifecycle on memb,
                        a quarter to the memory regions (shared by the flavors), half
                        shared by the cells of the grace-period torture, each at
                        least \(minimumCellSeconds) s (cells the time cannot hold are left out, and named)
          --readers N   reader threads (default 2); update-heavy runs 1 reader and N+1
                        updaters
          --flavor F    memb, qsbr, mb, bp, or all (default): of the memory regions
                        and the grace-period torture
          --mode M      read-heavy (N readers, 1 updater), update-heavy (1 reader,
                        N+1 updaters), stress (N readers with nested sections, 1
                        updater, 5 threads waiting for grace periods), or all (default)
          --callrcu W   callback workers: global (the default worker), per-cpu,
                        per-thread (one per updating thread), or all (default)
          --suite S     run one suite, or the three timed ones (all, the default); the
                        flood (N closures from 2 threads through memb's call_rcu,
                        without and with back-pressure) runs only when named
          --callbacks N closures in the flood (default 10000000)
        """)
    exit(2)
}

/// A comma-separated selection among `all`, or all of them for "all".
func parseList<Choice>(_ value: String?, _ all: [Choice], name: (Choice) -> String) -> [Choice] {
    guard let value else { usage() }
    if value == "all" { return all }
    let names = Set(value.split(separator: ",").map(String.init))
    let chosen = all.filter { names.contains(name($0)) }
    guard chosen.count == names.count else { usage() }
    return chosen
}

func parseOptions() -> Options {
    var options = Options()
    var arguments = CommandLine.arguments.dropFirst()
    while let argument = arguments.popFirst() {
        switch argument {
        case "--seconds":
            guard let value = arguments.popFirst().flatMap(Double.init), value > 0 else { usage() }
            options.seconds = value
        case "--readers":
            guard let value = arguments.popFirst().flatMap(Int.init), value > 0 else { usage() }
            options.readers = value
        case "--flavor":
            options.flavors = parseList(arguments.popFirst(), options.flavors) { $0 }
        case "--mode":
            options.modes = parseList(arguments.popFirst(), Mode.allCases, name: \.rawValue)
        case "--callrcu":
            options.callbackWorkers = parseList(arguments.popFirst(), CallbackWorkers.allCases, name: \.rawValue)
        case "--suite":
            guard let value = arguments.popFirst() else { usage() }
            if value != "all" {
                guard options.suites.contains(value) || value == "flood" else { usage() }
                options.suites = [value]
            }
        case "--callbacks":
            guard let value = arguments.popFirst().flatMap(Int.init), value > 1 else { usage() }
            options.floodCallbacks = value
        default:
            usage()
        }
    }
    return options
}

func rate(_ count: Int, _ seconds: Double) -> String {
    let perSecond = Double(count) / max(seconds, 1e-9)
    if perSecond >= 1e6 { return "\(Int(perSecond / 1e5) / 10).\(Int(perSecond / 1e5) % 10)M/s" }
    if perSecond >= 1e3 { return "\(Int(perSecond / 1e2) / 10).\(Int(perSecond / 1e2) % 10)k/s" }
    return "\(Int(perSecond))/s"
}

let options = parseOptions()
/// The time of `suite`: the grace-period matrix has half of it, the two
/// lifecycles a quarter each, among the suites selected.
func timeShare(of suite: String) -> Double {
    func weight(_ suite: String) -> Double { suite == "grace-periods" ? 2 : 1 }
    return options.seconds * weight(suite) / options.suites.map(weight).reduce(0, +)
}
var failures: [String] = []

// MARK: The seeds' lifecycle

if options.suites.contains("lifecycle") {
    let share = timeShare(of: "lifecycle")
    print("urcu-torture: context lifecycle on memb, \(options.readers) readers + 1 updater, \(share)s")
    let report = LifecycleTorture.run(MembarrierRCU.self, seconds: share, readers: options.readers) { report in
        let s = report.statistics
        print("[lifecycle \(Int(report.seconds))s] lookups \(rate(report.lookups, report.seconds)), "
            + "submits \(rate(report.submits, report.seconds)), created \(s.created), freed \(s.freed), "
            + "live \(s.live), use-after-free \(s.useAfterFree)")
    }
    let s = report.statistics
    print("""

        | lifecycle (memb) | count | per second |
        |---|---:|---:|
        | lookups (tryGetLive under RCU) | \(report.lookups) | \(rate(report.lookups, report.seconds)) |
        | lookups that found nothing | \(report.failedLookups) | |
        | requests submitted | \(report.submits) | \(rate(report.submits, report.seconds)) |
        | requests completed / cancelled | \(s.completed) / \(s.cancelled) | |
        | ring index writes by "user space" | \(report.ringIndexWrites) | |
        | contexts created / failed creates | \(s.created) / \(s.failedCreates) | \(rate(s.created, report.seconds)) |
        | contexts destroyed / freed | \(s.destroyed) / \(s.freed) | |
        | slot-table growths (each old table freed after a grace period) | \(s.tableGrowths) | |
        | RCU callbacks run (each after a grace period) | \(report.callbacksRun) | |
        | use-after-free detections | \(s.useAfterFree) | |
        | leaks (live, objects, pending frees, budget) | \(s.live), \(s.objects), \(s.pendingFrees), \(s.budgetInUse) | |

        """)
    failures += report.errors.map { "lifecycle: \($0)" }
}

// MARK: The memory regions

/// Timeouts provoked (and recovered) per flavor.
let provokedTimeouts = 2

func runMemoryRegions<F: LiburcuFlavor>(_: F.Type, seconds: Double, readers: Int) -> MemoryRegionTorture.Report {
    MemoryRegionTorture.run(F.self, seconds: seconds, timeouts: provokedTimeouts, readers: readers) { report in
        print("[memory regions \(report.flavor) \(Int(report.seconds))s] lookups \(rate(report.lookups, report.seconds)), "
            + "freed \(report.freed), timeouts provoked \(report.timeoutsProvoked), use-after-free \(report.useAfterFree)")
    }
}

if options.suites.contains("memory-regions") {
    let seconds = timeShare(of: "memory-regions") / Double(options.flavors.count)
    print("urcu-torture: memory regions (RDMAVT), \(options.readers) readers + 1 updater, \(seconds)s per flavor "
        + "(\(options.flavors.joined(separator: ", "))), \(provokedTimeouts) timeouts provoked in each")
    let reports = options.flavors.map { flavor in
        switch flavor {
        case "memb": runMemoryRegions(MembarrierRCU.self, seconds: seconds, readers: options.readers)
        case "qsbr": runMemoryRegions(QuiescentStateRCU.self, seconds: seconds, readers: options.readers)
        case "mb": runMemoryRegions(MemoryBarrierRCU.self, seconds: seconds, readers: options.readers)
        default: runMemoryRegions(BulletproofRCU.self, seconds: seconds, readers: options.readers)
        }
    }
    print("""

        | memory regions | lookups (plain get under RCU) | found nothing | dependents | registered / freed | timeouts provoked / recovered | unplanned timeouts | use-after-free | leaks |
        |---|---:|---:|---:|---|---|---:|---:|---:|
        """)
    for report in reports {
        print("| \(report.flavor) | \(report.lookups) (\(rate(report.lookups, report.seconds))) | \(report.failedLookups) | "
            + "\(report.dependents) | \(report.registered) / \(report.freed) | "
            + "\(report.timeoutsProvoked) / \(report.timeoutsRecovered) | \(report.unplannedTimeouts) | "
            + "\(report.useAfterFree) | \(report.leaks) |")
        failures += report.errors.map { "memory regions (\(report.flavor)): \($0)" }
    }
    print("")
}

// MARK: The grace-period matrix

struct Cell {
    var flavor: String
    var mode: Mode
    var callbackWorkers: CallbackWorkers

    var name: String { GracePeriodTorture.cellName(flavor: flavor, mode: mode, callbackWorkers: callbackWorkers) }
}

/// The selected cells in rounds: each round runs every mode x call_rcu
/// workers pair once, the flavors rotating from pair to pair and round to
/// round, so that a run with time for one round still covers every flavor,
/// mode and configuration, and the rounds together cover every cell once.
func matrix(_ options: Options) -> [Cell] {
    let pairs = options.modes.flatMap { mode in options.callbackWorkers.map { (mode, $0) } }
    return (0..<options.flavors.count).flatMap { round in
        pairs.enumerated().map { index, pair in
            Cell(flavor: options.flavors[(index + round) % options.flavors.count], mode: pair.0, callbackWorkers: pair.1)
        }
    }
}

func runCell<F: LiburcuFlavor>(_: F.Type, _ cell: Cell, seconds: Double, readers: Int) -> TortureReport {
    GracePeriodTorture.run(
        F.self, mode: cell.mode, callbackWorkers: cell.callbackWorkers, goal: .init(seconds: seconds), readers: readers
    ) { report in
        print("[\(report.cell) \(Int(report.seconds))s] reads \(rate(report.reads, report.seconds)), "
            + "updates \(rate(report.updates, report.seconds)), grace periods \(report.totalGracePeriods), "
            + "errors \(report.errors)")
    }
}

func runCell(_ cell: Cell, seconds: Double, readers: Int) -> TortureReport {
    switch cell.flavor {
    case "memb": runCell(MembarrierRCU.self, cell, seconds: seconds, readers: readers)
    case "qsbr": runCell(QuiescentStateRCU.self, cell, seconds: seconds, readers: readers)
    case "mb": runCell(MemoryBarrierRCU.self, cell, seconds: seconds, readers: readers)
    default: runCell(BulletproofRCU.self, cell, seconds: seconds, readers: readers)
    }
}

if options.suites.contains("grace-periods") {
    let share = timeShare(of: "grace-periods")
    let selected = matrix(options)
    let cells = Array(selected.prefix(max(1, Int(share / minimumCellSeconds))))
    let threads = options.modes.map { mode in
        let roles = GracePeriodTorture.threads(mode, readers: options.readers)
        return "\(mode.rawValue) \(roles.readers)+\(roles.updaters)" + (roles.waiters > 0 ? "+\(roles.waiters)" : "")
    }
    print("urcu-torture: grace-period torture, \(cells.count) cells (flavor x mode x call_rcu workers), "
        + "\((share / Double(cells.count) * 100).rounded() / 100)s each; readers+updaters(+waiters): \(threads.joined(separator: ", "))")
    if cells.count < selected.count {
        let needed = (Double(selected.count) * minimumCellSeconds * options.seconds / share).rounded(.up)
        print("urcu-torture: time for \(cells.count) of \(selected.count) cells (--seconds \(Int(needed)) runs them all); "
            + "left out: \(selected.dropFirst(cells.count).map(\.name).joined(separator: ", "))")
    }
    // Each cell gets an equal part of what is left, so that set-up and
    // tear-down come out of the share instead of adding to it.
    let start = monotonicSeconds()
    var reports: [TortureReport] = []
    for (index, cell) in cells.enumerated() {
        let left = share - (monotonicSeconds() - start)
        let seconds = max(left / Double(cells.count - index), minimumCellSeconds)
        reports.append(runCell(cell, seconds: seconds, readers: options.readers))
    }
    func order(_ report: TortureReport) -> [Int] {
        [options.flavors.firstIndex(of: report.flavor) ?? 0, options.modes.firstIndex(of: report.mode) ?? 0,
         options.callbackWorkers.firstIndex(of: report.callbackWorkers) ?? 0]
    }
    reports.sort { order($0).lexicographicallyPrecedes(order($1)) }
    print("")
    print("| flavor | mode | call_rcu | reads/s | updates/s | grace periods: sync / call / poll / bounce / async | "
        + "calls on its workers | pipe 0 / 1 / >1 | errors |")
    print("|---|---|---|---:|---:|---|---:|---|---:|")
    for report in reports {
        let mechanisms = GracePeriodTorture.Mechanism.allCases.map { "\(report.gracePeriods[$0, default: 0])" }
        let calls = report.callsOnConfiguredWorkers + report.callsElsewhere
        let older = report.pipeHistogram.dropFirst(2).reduce(0, +)
        print("| \(report.flavor) | \(report.mode.rawValue) | \(report.callbackWorkers.rawValue) | "
            + "\(rate(report.reads, report.seconds)) | \(rate(report.updates, report.seconds)) | "
            + "\(mechanisms.joined(separator: " / ")) | \(report.callsOnConfiguredWorkers)/\(calls) | "
            + "\(report.pipeHistogram[0]) / \(report.pipeHistogram[1]) / \(older) | \(report.errors) |")
        failures += report.problems.map { "\(report.cell): \($0)" }
    }
}

// MARK: Callback flood

if options.suites.contains("flood") {
    print("urcu-torture: \(options.floodCallbacks) closures through memb's call_rcu from 2 threads")
    print("")
    print("| back-pressure limit | seconds | peak pending | peak RSS (MiB) | left pending |")
    print("|---|---:|---:|---:|---:|")
    for limit in [nil, 100_000] as [Int?] {
        let report = CallbackFlood.run(MembarrierRCU.self, perThread: options.floodCallbacks / 2, limit: limit)
        let seconds = (report.seconds * 10).rounded() / 10
        let rss = (report.peakRSSMiB * 10).rounded() / 10
        print("| \(limit.map(String.init) ?? "none") | \(seconds) | \(report.peakPending) | \(rss) | \(report.leftPending) |")
        if report.leftPending != 0 { failures.append("flood: \(report.leftPending) callbacks never ran") }
        if let limit, report.peakPending > limit + 2 {
            failures.append("flood: \(report.peakPending) pending with a limit of \(limit)")
        }
    }
}

if failures.isEmpty {
    print("\nurcu-torture: PASS")
} else {
    print("\nurcu-torture: FAIL")
    failures.forEach { print("  - \($0)") }
    exit(1)
}
