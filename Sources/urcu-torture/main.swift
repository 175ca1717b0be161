// The torture run: the library on real threads for a bounded time, with
// progress while it runs and a summary at the end. Exits non-zero on any
// error. `make torture` runs it; `urcu-torture --help` lists the options.
//
// Two suites share the time: the seeds' context lifecycle (ContextTable
// over PercpuRef and RCU), and the grace-period torture (rcutorture's pipe
// count) on each flavor.

import ContextTable
import URCU
import URCUTorture

#if canImport(Glibc)
import Glibc
#endif

struct Options {
    var seconds = 20.0
    var readers = 2
    var flavors = ["memb", "qsbr", "mb", "bp"]
    var suites = ["lifecycle", "grace-periods"]
    var floodCallbacks = 10_000_000
}

func usage() -> Never {
    print("""
        usage: urcu-torture [--seconds S] [--readers N] [--flavor memb|qsbr|mb|bp|all]
                            [--suite lifecycle|grace-periods|all|flood] [--callbacks N]
          --seconds S   total duration (default 20): half to the lifecycle on memb,
                        half shared by the flavors in the grace-period torture
          --readers N   reader threads (default 2)
          --flavor F    grace-period torture on one flavor, or all (default)
          --suite S     run one suite, or both timed ones (all, the default); the
                        flood (N closures from 2 threads through memb's call_rcu,
                        without and with back-pressure) runs only when named
          --callbacks N closures in the flood (default 10000000)
        """)
    exit(2)
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
            guard let value = arguments.popFirst() else { usage() }
            if value != "all" {
                guard options.flavors.contains(value) else { usage() }
                options.flavors = [value]
            }
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
let share = options.seconds / Double(options.suites.count)
var failures: [String] = []

// MARK: The seeds' lifecycle

if options.suites.contains("lifecycle") {
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
        | RCU callbacks run (each after a grace period) | \(report.callbacksRun) | |
        | use-after-free detections | \(s.useAfterFree) | |
        | leaks (live, objects, pending frees, budget) | \(s.live), \(s.objects), \(s.pendingFrees), \(s.budgetInUse) | |

        """)
    failures += report.errors.map { "lifecycle: \($0)" }
}

// MARK: Grace periods on every flavor

func runGracePeriodTorture<F: RCUFlavor>(_ flavor: F.Type, seconds: Double, readers: Int) -> TortureReport {
    GracePeriodTorture.run(flavor, seconds: seconds, readers: readers) { report in
        print("[\(report.flavor) \(Int(report.seconds))s] reads \(rate(report.reads, report.seconds)), "
            + "updates \(rate(report.updates, report.seconds)), grace periods \(report.totalGracePeriods), "
            + "errors \(report.errors)")
    }
}

if options.suites.contains("grace-periods") {
    let perFlavor = share / Double(options.flavors.count)
    print("urcu-torture: grace-period torture, \(options.readers) readers + 1 updater per flavor, \(perFlavor)s each")
    var reports: [TortureReport] = []
    for name in options.flavors {
        switch name {
        case "memb": reports.append(runGracePeriodTorture(MembarrierRCU.self, seconds: perFlavor, readers: options.readers))
        case "qsbr": reports.append(runGracePeriodTorture(QuiescentStateRCU.self, seconds: perFlavor, readers: options.readers))
        case "mb": reports.append(runGracePeriodTorture(MemoryBarrierRCU.self, seconds: perFlavor, readers: options.readers))
        default: reports.append(runGracePeriodTorture(BulletproofRCU.self, seconds: perFlavor, readers: options.readers))
        }
    }
    print("")
    print("| flavor | reads/s | updates/s | grace periods (by mechanism) | pipe 0 / 1 / >1 | errors |")
    print("|---|---:|---:|---|---|---:|")
    for report in reports {
        let mechanisms = report.gracePeriods.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        let older = report.pipeHistogram.dropFirst(2).reduce(0, +)
        print("| \(report.flavor) | \(rate(report.reads, report.seconds)) | \(rate(report.updates, report.seconds)) | "
            + "\(report.totalGracePeriods) (\(mechanisms)) | \(report.pipeHistogram[0]) / \(report.pipeHistogram[1]) / \(older) | \(report.errors) |")
        if report.errors > 0 { failures.append("\(report.flavor): \(report.errors) reads saw a grace period end under them") }
        if report.reads == 0 { failures.append("\(report.flavor): readers made no progress") }
        if report.totalGracePeriods == 0 { failures.append("\(report.flavor): no grace period completed (stall)") }
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
