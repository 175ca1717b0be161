import Dispatch
import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// liburcu's rcutorture idea on the Swift API: readers measure the age of
/// what they read in grace periods.
///
/// The updater replaces the published element, marks the old one removed
/// (pipe count 1), and after each later grace period increments the pipe
/// count of every element it removed. A reader that sees a pipe count above
/// 1 inside one read section has watched a grace period end while it was
/// still reading: a grace period that did not wait for it. The updater
/// rotates through five ways of waiting for a grace period (synchronize,
/// call, polling, the double bounce, async synchronize), so each one is
/// checked.
public enum GracePeriodTorture {
    /// How the updater waits for grace periods.
    public enum Waiting: Sendable {
        /// Every mechanism of the library, in rotation.
        case real
        /// No waiting at all: a deliberately broken updater, used to show
        /// that the readers' check catches a missing grace period.
        case skipped
    }

    /// The largest pipe count tracked; older elements are dropped.
    static let pipeLength = 10

    /// Read sections between two quiescent states (QSBR) and two updates of
    /// the shared counters.
    static let batch = 64

    final class Element: Sendable {
        let serial: Int
        let pipe = Atomic<Int>(0)
        init(serial: Int) { self.serial = serial }
        deinit { pipe.store(-1, ordering: .relaxed) }
    }

    final class Shared<Flavor: RCUFlavor>: Sendable {
        let current = RCUPointer<Element, Flavor>(Element(serial: 0))
        let stop = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let updates = Atomic<Int>(0)
        let errors = Atomic<Int>(0)
        let pipeHistogram = Mutex([Int](repeating: 0, count: pipeLength + 1))
        let gracePeriods = Mutex([String: Int]())
    }

    /// Runs readers and one updater for `seconds` and reports what they saw.
    ///
    /// - Parameter minimumUpdates: keep going past `seconds` until the
    ///   updater has done this many updates (so a loaded machine still
    ///   exercises every mechanism), but never past `10 * seconds + 10`.
    public static func run<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, seconds: Double, readers: Int = 2, minimumUpdates: Int = 0,
        waiting: Waiting = .real, progress: (@Sendable (TortureReport) -> Void)? = nil
    ) -> TortureReport {
        let shared = Shared<Flavor>()
        let start = monotonicSeconds()
        var threads = (0..<readers).map { _ in JoinableThread { reader(shared) } }
        threads.append(JoinableThread { updater(shared, waiting: waiting) })
        var nextProgress = start + 1
        let limit = 10 * seconds + 10
        func finished() -> Bool {
            let elapsed = monotonicSeconds() - start
            if elapsed >= limit { return true }
            return elapsed >= seconds && shared.updates.load(ordering: .relaxed) >= minimumUpdates
        }
        while !finished() {
            usleep(20_000)
            if let progress, monotonicSeconds() >= nextProgress {
                nextProgress += 1
                progress(report(shared, elapsed: monotonicSeconds() - start))
            }
        }
        shared.stop.store(true, ordering: .releasing)
        threads.forEach { $0.join() }
        Flavor.barrier()
        return report(shared, elapsed: monotonicSeconds() - start)
    }

    static func report<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, elapsed: Double) -> TortureReport {
        TortureReport(
            flavor: Flavor.name, seconds: elapsed,
            reads: shared.reads.load(ordering: .relaxed),
            updates: shared.updates.load(ordering: .relaxed),
            gracePeriods: shared.gracePeriods.withLock { $0 },
            pipeHistogram: shared.pipeHistogram.withLock { $0 },
            errors: shared.errors.load(ordering: .relaxed))
    }

    static func reader<Flavor: RCUFlavor>(_ shared: Shared<Flavor>) {
        let isQSBR = Flavor.self == QuiescentStateRCU.self
        if isQSBR { QuiescentStateRCU.registerThread() }
        var histogram = [Int](repeating: 0, count: pipeLength + 1)
        while !shared.stop.load(ordering: .relaxed) {
            var errors = 0
            for _ in 0..<batch {
                let pipe = Flavor.read { section in
                    shared.current.dereference(in: section) { element -> Int in
                        guard let element else { return -2 }
                        // Stay in the section a little, so a grace period
                        // has a chance to (wrongly) end under the reader.
                        var spins = 0
                        while spins < 16, element.pipe.load(ordering: .relaxed) >= 0 { spins += 1 }
                        return element.pipe.load(ordering: .acquiring)
                    }
                }
                if pipe < 0 || pipe > 1 { errors += 1 }
                histogram[max(0, min(pipe, pipeLength))] += 1
            }
            // Shared counters once per batch, so progress reports are live
            // without a shared write per read.
            shared.reads.wrappingAdd(batch, ordering: .relaxed)
            if errors > 0 { shared.errors.wrappingAdd(errors, ordering: .relaxed) }
            if isQSBR { QuiescentStateRCU.quiescentState() }
        }
        if isQSBR { QuiescentStateRCU.unregisterThread() }
        shared.pipeHistogram.withLock { total in
            for index in total.indices { total[index] += histogram[index] }
        }
    }

    static func updater<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, waiting: Waiting) {
        var removed: [Element] = []
        var serial = 0
        let executor = QueueExecutor(label: "urcu.torture.updater")
        while !shared.stop.load(ordering: .relaxed) {
            serial += 1
            if let old = shared.current.exchange(Element(serial: serial)) {
                old.pipe.store(1, ordering: .releasing)
                removed.append(old)
            }
            if waiting == .real {
                let mechanism = waitForGracePeriod(Flavor.self, rotation: serial, executor: executor)
                shared.gracePeriods.withLock { $0[mechanism, default: 0] += 1 }
            }
            // Every element removed before that grace period is one period
            // older; a reader still inside a section that found it would see
            // a pipe count of 2.
            for element in removed { element.pipe.wrappingAdd(1, ordering: .releasing) }
            removed.removeAll { $0.pipe.load(ordering: .relaxed) >= pipeLength }
            shared.updates.wrappingAdd(1, ordering: .relaxed)
        }
    }

    /// Waits for one grace period, by the mechanism `rotation` selects.
    ///
    /// The double bounce and the async synchronize run on the updater's own
    /// executor: a task on the cooperative pool waits for as long as other
    /// code blocks the pool's few threads (two on a 2-core machine), and a
    /// torture run inside a busy test process then stalls on it.
    static func waitForGracePeriod<Flavor: RCUFlavor>(
        _: Flavor.Type, rotation: Int, executor: QueueExecutor
    ) -> String {
        switch rotation % 5 {
        case 0:
            Flavor.synchronize()
            return "synchronize"
        case 1:
            let done = Atomic<Bool>(false)
            Flavor.call { done.store(true, ordering: .releasing) }
            while !done.load(ordering: .acquiring) { usleep(50) }
            return "call"
        case 2:
            let cookie = Flavor.startPoll()
            while !Flavor.poll(cookie) { usleep(50) }
            return "poll"
        case 3:
            let done = Atomic<Bool>(false)
            Flavor.afterGracePeriod(on: executor.queue) { done.store(true, ordering: .releasing) }
            while !done.load(ordering: .acquiring) { usleep(50) }
            return "double bounce"
        default:
            let done = Atomic<Bool>(false)
            Task(executorPreference: executor) { await Flavor.synchronize(); done.store(true, ordering: .releasing) }
            while !done.load(ordering: .acquiring) { usleep(50) }
            return "async synchronize"
        }
    }
}

/// What a torture run saw.
public struct TortureReport: Sendable {
    public var flavor: String
    public var seconds: Double
    public var reads: Int
    public var updates: Int
    public var gracePeriods: [String: Int]
    /// Reads by the pipe count they saw; only 0 and 1 are correct.
    public var pipeHistogram: [Int]
    /// Reads that saw an element older than one grace period, or freed.
    public var errors: Int

    public var totalGracePeriods: Int { gracePeriods.values.reduce(0, +) }
}
