import ContextTable
import CURCU
import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// The seeds' lifecycle on real threads: reader threads look contexts up,
/// submit, complete and reap, and scribble over the ring indices; an updater
/// creates and destroys contexts under them. Every context must be freed
/// exactly once, never under a reader, and everything must be given back.
public enum LifecycleTorture {
    public struct Report: Sendable {
        public var flavor: String
        public var seconds: Double
        public var lookups = 0
        public var failedLookups = 0
        public var submits = 0
        public var completes = 0
        public var ringIndexWrites = 0
        public var statistics = LifecycleStatistics()
        /// Callbacks run by the flavor during the run, each after a grace
        /// period.
        public var callbacksRun = 0
        /// A clean final state (see ``LifecycleStatistics/isClean``).
        public var clean: Bool { statistics.isClean }

        /// Adds a round's counts (its time and callbacks are the run's).
        mutating func add(_ round: Report) {
            lookups += round.lookups
            failedLookups += round.failedLookups
            submits += round.submits
            completes += round.completes
            ringIndexWrites += round.ringIndexWrites
            statistics.add(round.statistics)
        }

        public var errors: [String] {
            var errors: [String] = []
            if statistics.useAfterFree > 0 { errors.append("\(statistics.useAfterFree) uses after free") }
            if !clean { errors.append("not clean at the end: \(statistics)") }
            if statistics.tableGrowths == 0 { errors.append("the table never grew") }
            if lookups == 0 || statistics.created == 0 || statistics.freed == 0 {
                errors.append("no progress (lookups \(lookups), created \(statistics.created), freed \(statistics.freed))")
            }
            return errors
        }
    }

    final class Shared<Flavor: RCUFlavor>: Sendable {
        let table: ContextTable<Flavor>
        let known = Lock<[ContextID]>([])
        let stop = Atomic<Bool>(false)
        let lookups = Atomic<Int>(0)
        let failedLookups = Atomic<Int>(0)
        let submits = Atomic<Int>(0)
        let completes = Atomic<Int>(0)
        let ringIndexWrites = Atomic<Int>(0)

        init(table: ContextTable<Flavor>) { self.table = table }
    }

    /// Runs the readers and the updater for `seconds`, then on until the
    /// updater has created `minimumCreated` contexts (so that a loaded
    /// machine makes the run longer, not thinner), but never past
    /// `timeLimit` (by default `10 * seconds + 10`), in rounds of
    /// ``roundSeconds``.
    public static func run<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, seconds: Double, minimumCreated: Int = 0, timeLimit: Double? = nil, readers: Int = 2,
        progress: (@Sendable (Report) -> Void)? = nil
    ) -> Report {
        let callbacksBefore = Flavor.callbacksRun
        let start = monotonicSeconds()
        let limit = timeLimit ?? 10 * seconds + 10
        var total = Report(flavor: Flavor.name, seconds: 0)
        var nextProgress = start + 1
        repeat {
            total.add(round(flavor, readers: readers))
            total.seconds = monotonicSeconds() - start
            total.callbacksRun = Flavor.callbacksRun - callbacksBefore
            if let progress, monotonicSeconds() >= nextProgress {
                nextProgress += 1
                progress(total)
            }
        } while total.seconds < limit && (total.seconds < seconds || total.statistics.created < minimumCreated)
        return total
    }

    /// How long one table lives. A table only grows, so a run grows tables
    /// many times only if it starts fresh ones: each round's table starts
    /// with one slot and grows under the readers (to 2, 4, 8, 16 slots, each
    /// replaced table freed after a grace period), and the round ends with
    /// the table's shutdown (`exit_aio`), which must free everything.
    static var roundSeconds: Double { 0.25 }

    static func round<Flavor: RCUFlavor>(_ flavor: Flavor.Type, readers: Int) -> Report {
        let shared = Shared(table: ContextTable<Flavor>(capacity: 1, maximumCapacity: 16, requestBudget: 16 * 24))
        var threads = (0..<readers).map { index in JoinableThread { reader(shared, seed: UInt64(index) + 1) } }
        threads.append(JoinableThread { updater(shared) })
        usleep(useconds_t(roundSeconds * 1_000_000))
        shared.stop.store(true, ordering: .releasing)
        threads.forEach { $0.join() }
        // The round's counts; its time and callbacks are the run's.
        return Report(
            flavor: Flavor.name, seconds: 0,
            lookups: shared.lookups.load(ordering: .relaxed),
            failedLookups: shared.failedLookups.load(ordering: .relaxed),
            submits: shared.submits.load(ordering: .relaxed),
            completes: shared.completes.load(ordering: .relaxed),
            ringIndexWrites: shared.ringIndexWrites.load(ordering: .relaxed),
            statistics: shared.table.shutdown())
    }

    static func reader<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, seed: UInt64) {
        var random = SplitMix(seed: seed)
        var pending: [ContextRequest<Flavor>] = []
        var lookups = 0, failed = 0, submits = 0, completes = 0, scribbles = 0
        while !shared.stop.load(ordering: .relaxed) {
            for _ in 0..<32 {
                let candidates = shared.known.withLock { $0 }
                guard !candidates.isEmpty else { break }
                let id = candidates[Int(random.next() % UInt64(candidates.count))]
                lookups += 1
                guard let lease = shared.table.lookup(id) else {
                    failed += 1
                    continue
                }
                for _ in 0..<Int(random.next() % 3) + 1 {
                    guard let request = try? lease.submit() else { break }
                    submits += 1
                    // Keep some requests in flight across destroys.
                    if random.next() % 4 == 0 { pending.append(request) } else if request.complete() { completes += 1 }
                }
                if random.next() % 8 == 0 {
                    // User space may write anything into the ring header,
                    // at any time: atomically, like the library's own
                    // accesses, so ThreadSanitizer checks that those are.
                    let header = UnsafeMutableRawPointer(lease.userRingIndices)
                    for field in [\RingIndices.head, \RingIndices.tail] {
                        let index = (header + MemoryLayout<RingIndices>.offset(of: field)!).assumingMemoryBound(to: UInt32.self)
                        curcu_store_relaxed_u32(index, UInt32(truncatingIfNeeded: random.next()))
                    }
                    scribbles += 1
                }
                _ = lease.reapEvents(maximum: 8)
            }
            while pending.count > 16, let request = pending.popLast() {
                if request.complete() { completes += 1 }
            }
            shared.lookups.wrappingAdd(lookups, ordering: .relaxed)
            shared.failedLookups.wrappingAdd(failed, ordering: .relaxed)
            shared.submits.wrappingAdd(submits, ordering: .relaxed)
            shared.completes.wrappingAdd(completes, ordering: .relaxed)
            shared.ringIndexWrites.wrappingAdd(scribbles, ordering: .relaxed)
            lookups = 0; failed = 0; submits = 0; completes = 0; scribbles = 0
        }
        for request in pending where request.complete() { completes += 1 }
        shared.completes.wrappingAdd(completes, ordering: .relaxed)
    }

    static func updater<Flavor: RCUFlavor>(_ shared: Shared<Flavor>) {
        var random = SplitMix(seed: 0x5EED)
        while !shared.stop.load(ordering: .relaxed) {
            let live = shared.known.withLock { $0 }
            if live.count < 12 || random.next() % 2 == 0,
               let id = try? shared.table.create(maxRequests: Int(random.next() % 24) + 1) {
                shared.known.withLock { $0.append(id) }
            } else if let victim = live.randomElement(using: &random) {
                // Readers may still look the destroyed ID up: they must fail.
                if random.next() % 2 == 0 { shared.known.withLock { $0.removeAll { $0 == victim } } }
                try? shared.table.destroy(victim)
            }
            shared.known.withLock { known in
                if known.count > 64 { known.removeFirst(known.count - 64) }
            }
            usleep(200)
        }
    }
}
