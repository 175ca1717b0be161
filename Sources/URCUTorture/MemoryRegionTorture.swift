import MemoryRegions
import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// The RDMAVT memory-region lifecycle on real threads: reader threads look
/// regions up (a plain get inside a read section, as `rvt_lkey_ok`), use
/// the region's memory and put the reference or hand it to the region (a
/// dependent); an updater registers regions and deregisters them under the
/// readers, each deregistration with its grace period and its wait. Now
/// and then the updater provokes a timeout on purpose: a holder thread
/// keeps a reference past the deregistration's timeout, the deregistration
/// must report it and free nothing, and once the holder lets go the region
/// is deregistered again, successfully. Every region must be freed, never
/// under a reader.
public enum MemoryRegionTorture {
    public struct Report: Sendable {
        public var flavor: String
        public var seconds: Double
        public var lookups = 0
        public var failedLookups = 0
        /// References handed to their region (dependents), dropped by the
        /// deregistration.
        public var dependents = 0
        public var registered = 0
        /// Regions deregistered and freed.
        public var freed = 0
        public var timeoutsPlanned = 0
        public var timeoutsProvoked = 0
        public var timeoutsRecovered = 0
        /// Timeouts nobody provoked (a reader descheduled while it held a
        /// reference past the timeout), each deregistered again later.
        public var unplannedTimeouts = 0
        /// Regions a reader found with other bytes than registered (the
        /// free's poison): uses after free.
        public var useAfterFree = 0
        /// Regions registered and not freed at the end.
        public var leaks: Int { registered - freed }
        public var problems: [String] = []

        public var errors: [String] {
            var errors = problems
            if useAfterFree > 0 { errors.append("\(useAfterFree) uses after free") }
            if leaks != 0 { errors.append("\(leaks) regions not freed at the end") }
            if timeoutsProvoked != timeoutsPlanned || timeoutsRecovered != timeoutsProvoked {
                errors.append("timeouts planned \(timeoutsPlanned), provoked \(timeoutsProvoked), recovered \(timeoutsRecovered)")
            }
            if lookups == 0 || freed == 0 { errors.append("no progress (lookups \(lookups), freed \(freed))") }
            return errors
        }
    }

    final class Shared<Flavor: RCUFlavor>: Sendable {
        let table: MemoryRegionTable<Flavor>
        /// Keys the readers pick from: live regions, and some already
        /// deregistered (a lookup of those must find nothing).
        let known = Lock<[MemoryRegionKey]>([])
        let stop = Atomic<Bool>(false)
        let lookups = Atomic<Int>(0)
        let failedLookups = Atomic<Int>(0)
        let dependents = Atomic<Int>(0)
        let registered = Atomic<Int>(0)
        let freed = Atomic<Int>(0)
        let provoked = Atomic<Int>(0)
        let recovered = Atomic<Int>(0)
        let unplanned = Atomic<Int>(0)
        let useAfterFree = Atomic<Int>(0)
        let problems = Lock<[String]>([])

        init(table: MemoryRegionTable<Flavor>) { self.table = table }

        func problem(_ description: String) { problems.withLock { $0.append(description) } }
    }

    /// How long a deregistration waits for the last reference: long beside
    /// a reader's use of a region (at most ``longestFlightMicroseconds``),
    /// short enough that the provoked timeouts cost little.
    static let deregistrationTimeout = 0.2

    /// Runs the readers and the updater for `seconds`, then on until the
    /// `timeouts` provoked timeouts have been made and recovered, but never
    /// past `timeLimit` (by default `10 * seconds + 10`).
    public static func run<Flavor: LiburcuFlavor>(
        _ flavor: Flavor.Type, seconds: Double, timeouts: Int = 2, timeLimit: Double? = nil, readers: Int = 2,
        progress: (@Sendable (Report) -> Void)? = nil
    ) -> Report {
        // Threads are delayed at random at the points where an order's
        // mistake would show, as rcutorture delays its threads: every other
        // deregistration step and release starts up to half a millisecond
        // late, and one lookup in 64 waits up to 200 µs between loading the
        // region and its get. The windows (a count already zero, its
        // release not yet finished; a region found, not yet counted) are
        // then wide enough for the other threads to hit.
        let stretches = Counter()
        func stretch(oneIn chance: UInt64, upTo microseconds: UInt64) -> @Sendable () -> Void {
            {
                stretches.increment()
                var random = SplitMix(seed: UInt64(stretches.value))
                if random.next() % chance == 0 { usleep(UInt32(random.next() % microseconds)) }
            }
        }
        let stretchStep = stretch(oneIn: 2, upTo: 500), stretchLookup = stretch(oneIn: 64, upTo: 200)
        let shared = Shared(table: MemoryRegionTable<Flavor>(
            capacity: 16, deregistrationTimeout: deregistrationTimeout, teardown: SynchronizeThenDrop(),
            lookupLoaded: { _ in stretchLookup() }, releaseStarted: stretchStep, stepTaken: { _ in stretchStep() }))
        let start = monotonicSeconds()
        var threads = (0..<readers).map { index in
            JoinableThread(name: "region reader") { reader(shared, seed: UInt64(index) + 1) }
        }
        threads.append(JoinableThread(name: "region updater") {
            updater(shared, start: start, seconds: seconds, timeouts: timeouts)
        })
        let limit = timeLimit ?? 10 * seconds + 10
        func finished() -> Bool {
            let elapsed = monotonicSeconds() - start
            return elapsed >= limit || (elapsed >= seconds && shared.recovered.load(ordering: .acquiring) >= timeouts)
        }
        var nextProgress = start + 1
        while !finished() {
            usleep(20_000)
            if let progress, monotonicSeconds() >= nextProgress {
                nextProgress += 1
                progress(report(shared, elapsed: monotonicSeconds() - start, timeouts: timeouts))
            }
        }
        shared.stop.store(true, ordering: .releasing)
        threads.forEach { $0.join() }
        return report(shared, elapsed: monotonicSeconds() - start, timeouts: timeouts)
    }

    static func report<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, elapsed: Double, timeouts: Int) -> Report {
        Report(
            flavor: Flavor.name, seconds: elapsed,
            lookups: shared.lookups.load(ordering: .relaxed),
            failedLookups: shared.failedLookups.load(ordering: .relaxed),
            dependents: shared.dependents.load(ordering: .relaxed),
            registered: shared.registered.load(ordering: .acquiring),
            freed: shared.freed.load(ordering: .acquiring),
            timeoutsPlanned: timeouts,
            timeoutsProvoked: shared.provoked.load(ordering: .acquiring),
            timeoutsRecovered: shared.recovered.load(ordering: .acquiring),
            unplannedTimeouts: shared.unplanned.load(ordering: .acquiring),
            useAfterFree: shared.useAfterFree.load(ordering: .acquiring),
            problems: shared.problems.withLock { $0 })
    }

    /// Runs `body` on a thread registered with the flavor if it needs it
    /// (QSBR), reporting quiescent states through `quiescent`.
    static func asReaderThread<Flavor: RCUFlavor>(_: Flavor.Type, _ body: (_ quiescent: () -> Void) -> Void) {
        guard Flavor.self == QuiescentStateRCU.self else { return body {} }
        QuiescentStateRCU.registerThread()
        body { QuiescentStateRCU.quiescentState() }
        QuiescentStateRCU.unregisterThread()
    }

    /// Whether the region's memory is as registered (zeroed, and nobody
    /// writes it): the free's poison, or memory reused after it, is not.
    static func isIntact(_ bytes: UnsafeMutableRawBufferPointer) -> Bool { bytes.allSatisfy { $0 == 0 } }

    /// A reference a reader keeps for a while, as a work request in flight
    /// keeps its region (`rvt_sge`): up to a few milliseconds, longer than
    /// a grace period, so that deregistrations find readers holding the
    /// region when they kill it and wait for them.
    final class InFlight<Flavor: RCUFlavor> {
        var reference: MemoryRegionReference<Flavor>?
        var deadline = 0.0
        var isHeld: Bool { reference != nil }
    }

    /// References in flight per reader, and how long each stays at most.
    static var inFlightPerReader: Int { 4 }
    static var longestFlightMicroseconds: UInt64 { 4_000 }

    static func reader<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, seed: UInt64) {
        asReaderThread(Flavor.self) { quiescent in
            var random = SplitMix(seed: seed)
            var lookups = 0, failed = 0, dependents = 0, damaged = 0
            let inFlight = (0..<inFlightPerReader).map { _ in InFlight<Flavor>() }
            /// The request completes: it uses the region once more, then
            /// puts its reference or hands it to the region.
            func complete(_ reference: consuming MemoryRegionReference<Flavor>) {
                if !reference.withBytes(isIntact) { damaged += 1 }
                if random.next() % 8 == 0 {
                    reference.keepInRegion()
                    dependents += 1
                } else {
                    reference.put()
                }
            }
            while !shared.stop.load(ordering: .relaxed) {
                let now = monotonicSeconds()
                for request in inFlight where request.deadline <= now {
                    if let reference = request.reference.take() { complete(reference) }
                }
                let candidates = shared.known.withLock { $0 }
                for _ in 0..<32 where !candidates.isEmpty {
                    let key = candidates[Int(random.next() % UInt64(candidates.count))]
                    lookups += 1
                    guard let reference = shared.table.lookup(key) else {
                        failed += 1
                        continue
                    }
                    if !reference.withBytes(isIntact) { damaged += 1 }
                    if let request = inFlight.first(where: { !$0.isHeld }) {
                        request.reference = consume reference
                        request.deadline = now + Double(random.next() % longestFlightMicroseconds) / 1e6
                    } else {
                        complete(reference)
                    }
                }
                quiescent()
                shared.lookups.wrappingAdd(lookups, ordering: .relaxed)
                shared.failedLookups.wrappingAdd(failed, ordering: .relaxed)
                shared.dependents.wrappingAdd(dependents, ordering: .relaxed)
                shared.useAfterFree.wrappingAdd(damaged, ordering: .relaxed)
                lookups = 0; failed = 0; dependents = 0; damaged = 0
            }
            for request in inFlight {
                if let reference = request.reference.take() { complete(reference) }
            }
            shared.dependents.wrappingAdd(dependents, ordering: .relaxed)
            shared.useAfterFree.wrappingAdd(damaged, ordering: .relaxed)
        }
    }

    static func updater<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, start: Double, seconds: Double, timeouts: Int) {
        // Registered like the readers (its deregistrations go offline for
        // their waits), so that it may check lookups itself.
        asReaderThread(Flavor.self) { quiescent in
            var random = SplitMix(seed: 0x5EED)
            var live: [MemoryRegion<Flavor>] = []
            var timedOut: [MemoryRegion<Flavor>] = []
            while !shared.stop.load(ordering: .relaxed) {
                quiescent()
                if let region = timedOut.first, deregister(region, shared) { timedOut.removeFirst() }
                // The provoked timeouts, spread over the run.
                let provoked = shared.provoked.load(ordering: .relaxed)
                if provoked < timeouts, monotonicSeconds() - start >= Double(provoked + 1) * seconds / Double(timeouts + 1),
                   let victim = live.popLast() {
                    provokeTimeout(victim, shared)
                    continue
                }
                if live.count < 8 || random.next() % 2 == 0,
                   let region = try? shared.table.register(length: Int(random.next() % 241) + 16, atomicCount: random.next() % 2 == 0) {
                    shared.registered.wrappingAdd(1, ordering: .releasing)
                    live.append(region)
                    shared.known.withLock { $0.append(region.key) }
                } else if !live.isEmpty {
                    let victim = live.remove(at: Int(random.next() % UInt64(live.count)))
                    // Readers may still look the deregistered key up: they must find nothing.
                    if random.next() % 2 == 0 { shared.known.withLock { $0.removeAll { $0 == victim.key } } }
                    if !deregister(victim, shared) { timedOut.append(victim) }
                }
                shared.known.withLock { known in
                    if known.count > 24 { known.removeFirst(known.count - 24) }
                }
                usleep(200)
            }
            // The end: the readers are gone; everything must deregister.
            for region in live + timedOut where !deregisterRetrying(region, shared) {
                shared.problem("region \(region.key) still referenced after 10 deregistrations with no reader left")
            }
        }
    }

    /// Deregisters `region`; returns whether it was freed. A timeout here
    /// was not provoked: it is counted, and the caller tries again later.
    static func deregister<Flavor: RCUFlavor>(_ region: MemoryRegion<Flavor>, _ shared: Shared<Flavor>) -> Bool {
        do {
            try shared.table.deregister(region)
            shared.freed.wrappingAdd(1, ordering: .releasing)
            return true
        } catch {
            shared.unplanned.wrappingAdd(1, ordering: .releasing)
            return false
        }
    }

    /// ``deregister(_:_:)`` until it frees the region, at most 10 times.
    static func deregisterRetrying<Flavor: RCUFlavor>(_ region: MemoryRegion<Flavor>, _ shared: Shared<Flavor>) -> Bool {
        for _ in 1...10 {
            if deregister(region, shared) { return true }
        }
        return false
    }

    /// A holder thread takes a reference on `region` and keeps it past the
    /// deregistration's timeout: the deregistration must time out, free
    /// nothing and leave the region unreachable by lookups; once the holder
    /// (who still finds the region intact) lets go, the region deregisters.
    static func provokeTimeout<Flavor: RCUFlavor>(_ region: MemoryRegion<Flavor>, _ shared: Shared<Flavor>) {
        let holding = Latch(), letGo = Latch(), found = Latch()
        let key = region.key
        let holder = JoinableThread(name: "region holder") {
            asReaderThread(Flavor.self) { _ in
                guard let reference = shared.table.lookup(key) else { return holding.open() }
                found.open()
                holding.open()
                if Flavor.self == QuiescentStateRCU.self {
                    QuiescentStateRCU.whileOffline { _ = letGo.wait() }
                } else {
                    _ = letGo.wait()
                }
                // The deregistration that timed out freed nothing.
                if !reference.withBytes(isIntact) { shared.useAfterFree.wrappingAdd(1, ordering: .relaxed) }
                reference.put()
            }
        }
        _ = holding.wait()
        if !found.isOpen {
            shared.problem("region \(key), live, was not found by a lookup")
        } else {
            do {
                try shared.table.deregister(region)
                shared.freed.wrappingAdd(1, ordering: .releasing)
                shared.problem("deregistration of \(key) returned while a reader held a reference")
            } catch .stillReferenced(_, let references, _) where references >= 1 {
                shared.provoked.wrappingAdd(1, ordering: .releasing)
            } catch {
                shared.problem("deregistration of \(key) with a reference held failed with \(error)")
            }
            if let reference = shared.table.lookup(key) {
                reference.put()
                shared.problem("a lookup found \(key) after its deregistration timed out")
            }
        }
        letGo.open()
        holder.join()
        guard region.phase == .timedOut else { return }
        // Recovered: deregistered again now that the holder has let go (a
        // reader's reference from before the unpublish may still be in
        // flight: a few tries).
        if deregisterRetrying(region, shared) {
            shared.recovered.wrappingAdd(1, ordering: .releasing)
        } else {
            shared.problem("region \(key) still referenced after its holder let go")
        }
    }
}
