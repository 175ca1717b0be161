import Foundation
@testable import MemoryRegions
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

/// A step a memory-region run records: the table's, or a read section of
/// the caller's own around its lookups (which the table never sees).
enum RegionTraceEvent: TraceEvent, Equatable {
    case region(MemoryRegionEvent)
    case callerReadSection(entered: Bool)

    var isThreadStep: Bool {
        switch self {
        case .region(let event): event.isThreadStep
        case .callerReadSection: true
        }
    }

    /// The record `Spec/TraceMemoryRegion.tla` reads: regions are numbers
    /// (`regions` maps their keys), threads strings; `extra` fields (the
    /// tickets) go at the end.
    func tlaRecord(thread: String?, regions: [MemoryRegionKey: Int], extra: [(String, Int)]) -> String {
        var fields: [(String, String)] = []
        func region(_ key: MemoryRegionKey) { fields.append(("r", String(regions[key] ?? 0))) }
        let action: String
        switch self {
        case .callerReadSection(let entered): action = entered ? "ReadSectionEnter" : "ReadSectionExit"
        case .region(let event):
            switch event {
            case .registered(let key, let atomic):
                action = "Register"; region(key); fields.append(("mode", atomic ? "\"atomic\"" : "\"percpu\""))
            case .lookupReadLock: action = "LookupReadLock"
            case .lookupLoad(let key): action = "LookupLoad"; region(key)
            case .lookupMiss(let key): action = "LookupMiss"; region(key)
            case .lookupGet(let key): action = "LookupGet"; region(key)
            case .lookupReadUnlock: action = "LookupReadUnlock"
            case .readerPut(let key): action = "ReaderPut"; region(key)
            case .adopted(let key): action = "Adopt"; region(key)
            case .deregistrationClaimed(let key): action = "Claim"; region(key)
            case .deregistrationStep(let key, let step):
                // The action of `Order`'s step: `Unpublish` for
                // "unpublish", and `IsZeroCheck` for "isZero".
                let name = step.rawValue
                action = step == .isZero ? "IsZeroCheck" : name.prefix(1).uppercased() + name.dropFirst(); region(key)
            case .timedOut(let key): action = "Timeout"; region(key)
            case .freed(let key): action = "WaitAndFree"; region(key)
            case .switchConfirmed(let key): action = "RefSwitchConfirm"; region(key)
            case .released(let key): action = "Release"; region(key)
            }
        }
        if let thread { fields.append(("t", "\"\(thread)\"")) }
        fields += extra.map { ($0.0, String($0.1)) }
        return "[a |-> \"\(action)\"" + fields.map { ", \($0.0) |-> \($0.1)" }.joined() + "]"
    }
}

/// Records a memory-region table's steps without ordering them
/// (``TraceRecorder`` explains how).
final class MemoryRegionTraceRecorder: TraceRecorder<RegionTraceEvent>, MemoryRegionRecorder, @unchecked Sendable {
    func step(_ action: () -> MemoryRegionEvent?) {
        step { ((), action().map(RegionTraceEvent.region)) }
    }

    /// Runs `body` inside a read section of `Flavor` of the caller's own,
    /// recorded just inside its start and end.
    func readSection<Flavor: RCUFlavor>(_: Flavor.Type, _ body: () -> Void) {
        Flavor.read { _ in
            step { ((), RegionTraceEvent.callerReadSection(entered: true)) }
            body()
            step { ((), RegionTraceEvent.callerReadSection(entered: false)) }
        }
    }
}

/// A recorded memory-region run, written as a module of
/// `Spec/TraceMemoryRegion.tla` for TLC, with the implementation's state
/// at the end.
struct RegionTraceModule {
    var name: String
    /// The recorded steps, sorted by first ticket.
    let entries: [TraceRecorder<RegionTraceEvent>.Entry]
    /// The regions' numbers in the spec (`1..N`), in the order of their
    /// `Register` records.
    let numbers: [MemoryRegionKey: Int]
    /// `TraceMemoryRegion.tla`'s `Final`: the spec's variables as the
    /// implementation left them.
    let final: String

    /// Reads the final state of `regions` (every region `table` registered
    /// in the run) once every thread has stopped.
    init<Flavor>(
        name: String, entries: [TraceRecorder<RegionTraceEvent>.Entry], table: MemoryRegionTable<Flavor>,
        regions: [MemoryRegion<Flavor>]
    ) {
        self.name = name
        self.entries = entries
        var numbers: [MemoryRegionKey: Int] = [:]
        for entry in entries {
            if case .region(.registered(let key, _)) = entry.event { numbers[key] = numbers.count + 1 }
        }
        self.numbers = numbers
        let byNumber = regions.sorted { numbers[$0.key] ?? 0 < numbers[$1.key] ?? 0 }
        func perRegion(_ value: (MemoryRegion<Flavor>) -> String) -> String {
            "<<" + byNumber.map(value).joined(separator: ", ") + ">>"
        }
        func bool(_ value: Bool) -> String { value ? "TRUE" : "FALSE" }
        let fields = [
            "regionState |-> " + perRegion { region in
                switch region.phase {
                case .registered: "\"live\""
                case .deregistering: "\"deregistering\""
                case .timedOut: "\"timedOut\""
                case .freed: "\"freed\""
                }
            },
            "published |-> " + perRegion { bool(table.slots[$0.key.slot].region.access() == ObjectIdentifier($0)) },
            "ref |-> " + perRegion { region in
                let state = region.references.abstractState
                return "[count |-> \(state.count), mode |-> \"\(state.mode.rawValue)\", dead |-> \(bool(state.isDead)), "
                    + "forceAtomic |-> \(bool(state.forceAtomic)), releases |-> \(state.releases)]"
            },
            "dependents |-> " + perRegion { String($0.dependentsState.count) },
            "cleaned |-> " + perRegion { bool($0.dependentsState.dropped) },
            "released |-> " + perRegion { bool($0.released.hasFinished) },
            "frees |-> " + perRegion { $0.isFreed ? "1" : "0" },
            "reader |-> [t \\in TraceThreads |-> Idle]",
        ]
        final = "[" + fields.joined(separator: ",\n    ") + "]"
    }

    func write(to directory: URL) throws {
        let threads = Set(entries.compactMap(\.thread)).sorted()
        let records = entries.map {
            $0.event.tlaRecord(thread: $0.thread, regions: numbers, extra: [("b", $0.begin), ("e", $0.end!)])
        }
        try TraceCheckFiles(
            name: name, spec: "TraceMemoryRegion", records: records,
            definitions: [
                "TraceRegions == 1..\(numbers.count)",
                "TraceThreads == \(TraceCheckFiles.set(of: threads))",
                "TraceFinal == \(final)",
            ],
            constants: [
                "Regions <- TraceRegions", "Threads <- TraceThreads",
                "Flavors = {\"rcu\"}", "TableFlavor = \"rcu\"", "RefFlavor = \"rcu\"",
                "RefInitModes = {\"percpu\", \"atomic\"}",
                // No bound the run could reach.
                "MaxDependents = \(records.count)", "Bug = \"None\"",
            ]
        ).write(to: directory)
    }
}

/// Outside the serialized conformance suite: real flavors, no
/// ``ModelFlavor``.
@Suite("Trace validation of memory-region runs by TLC")
struct MemoryRegionTraceTests {
    static let capacity = 3

    /// Threads register, look up (holding the reference a moment, then
    /// putting it or handing it to the region), and deregister regions at
    /// random, on real threads over a real liburcu flavor, with nothing
    /// ordering their steps but the code itself; then every region left is
    /// deregistered. Half the lookups run inside a read section of the
    /// thread's own, so that grace periods have readers to wait for.
    ///
    /// The deregistration timeout is short (50 ms), so that a holder that
    /// is descheduled makes a deregistration time out now and then, and a
    /// later one retries it.
    ///
    /// `atomicCounts`: whether regions may start in atomic mode. The
    /// refuted orders run with percpu counts only: there a count cannot
    /// reach zero before percpu_ref's own grace period, and no reader's get
    /// revives it (which the library stops the process for); their traces
    /// are rejected all the same, at their first step out of `Order`.
    static func randomRun<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, seed: UInt64, operations: Int, teardown: any MemoryRegionTeardown,
        atomicCounts: Bool = true, name: String
    ) -> RegionTraceModule {
        let recorder = MemoryRegionTraceRecorder()
        let table = MemoryRegionTable<Flavor>(
            capacity: capacity, deregistrationTimeout: 0.05, teardown: teardown, recorder: recorder)
        let all = Lock<[MemoryRegion<Flavor>]>([])
        /// Regions registered and not claimed by a deregistration (a
        /// second deregistration of one is a misuse); timed-out ones are
        /// put back.
        let available = Lock<[MemoryRegion<Flavor>]>([])
        runThreadsTogether(3) { index in
            var random = SplitMix(seed: seed &* 1_000_003 &+ UInt64(index))
            for _ in 0..<operations {
                varySchedule(using: &random)
                switch Int.random(in: 0..<20, using: &random) {
                case 0..<4:
                    let atomic = atomicCounts && Bool.random(using: &random)
                    if let region = try? table.register(length: 16, atomicCount: atomic) {
                        all.withLock { $0.append(region) }
                        available.withLock { $0.append(region) }
                    }
                case 4..<16:
                    // Mostly a region not claimed yet; else any registered
                    // so far, most likely freed (a miss).
                    let anyRegion = Int.random(in: 0..<4, using: &random) == 0
                    let keys = anyRegion ? all.withLock { $0.map(\.key) } : available.withLock { $0.map(\.key) }
                    guard let key = keys.randomElement(using: &random) else { continue }
                    let spin = Int.random(in: 0..<500, using: &random)
                    let adopt = Int.random(in: 0..<4, using: &random) == 0
                    let inSection = Bool.random(using: &random)
                    // Now and then a holder outlasts a deregistration's
                    // timeout (outside a read section: inside, it would
                    // hold up the grace period instead).
                    let outlastsTimeout = !inSection && Int.random(in: 0..<30, using: &random) == 0
                    func lookUp() {
                        guard let reference = table.lookup(key) else { return }
                        for _ in 0..<spin { _ = random.next() }
                        if outlastsTimeout { usleep(60_000) }
                        if adopt { reference.keepInRegion() } else { reference.put() }
                    }
                    if inSection { recorder.readSection(Flavor.self, lookUp) } else { lookUp() }
                default:
                    let region = available.withLock {
                        $0.isEmpty ? nil : $0.remove(at: Int.random(in: 0..<$0.count, using: &random))
                    }
                    guard let region else { continue }
                    if (try? table.deregister(region)) == nil { available.withLock { $0.append(region) } }
                }
            }
        }
        // The regions left, until each is freed (a percpu count's switch
        // takes a grace period, which may outlast a timeout).
        for region in available.withLock({ $0 }) {
            #expect(eventually(seconds: 60) { (try? table.deregister(region)) != nil }, "run \(seed): \(region.key) not freed")
        }
        return RegionTraceModule(name: name, entries: recorder.trace, table: table, regions: all.withLock { $0 })
    }

    /// One random run of `teardown` over a liburcu flavor other than QSBR
    /// (which by `seed`), written to `directory`.
    static func recordRandomRun(
        seed: Int, operations: Int, teardown: any MemoryRegionTeardown, atomicCounts: Bool = true, name: String,
        directory: URL
    ) async throws -> RegionTraceModule {
        let module: RegionTraceModule = await offPool {
            switch seed % 3 {
            case 0: Self.randomRun(MembarrierRCU.self, seed: UInt64(seed), operations: operations, teardown: teardown, atomicCounts: atomicCounts, name: name)
            case 1: Self.randomRun(BulletproofRCU.self, seed: UInt64(seed), operations: operations, teardown: teardown, atomicCounts: atomicCounts, name: name)
            default: Self.randomRun(MemoryBarrierRCU.self, seed: UInt64(seed), operations: operations, teardown: teardown, atomicCounts: atomicCounts, name: name)
            }
        }
        // Each of the 3 threads' operations records an event or more (a
        // lookup four): a run that recorded fewer than 2 per operation did
        // not run its workload.
        #expect(module.entries.count >= 2 * operations, "run \(seed) recorded only \(module.entries.count) events")
        try module.write(to: directory)
        return module
    }

    /// TLC's verdicts on the traces in `directory`, with their count and
    /// how long recording (since `started`) and checking took.
    static func verdicts(
        in directory: URL, events: Int, since started: Date, label: String
    ) async throws -> [String: (accepted: Bool, line: String)] {
        let recorded = Date()
        let verdicts = try await checkTraces(in: directory)
        print("""
            memory-region trace validation (\(label)): \(verdicts.values.filter { !$0.accepted }.count)/\(verdicts.count) \
            traces rejected, \(events) events; runs \(String(format: "%.1f", recorded.timeIntervalSince(started))) s, \
            TLC \(String(format: "%.1f", Date().timeIntervalSince(recorded))) s
            """)
        return verdicts
    }

    /// Random runs of the fixed order, and the scripted
    /// ``readerAcrossSynchronize()`` (checked with them: one TLC batch).
    @Test("random runs of the fixed order on real threads, and a reader across its synchronize, are behaviours of the spec")
    func randomRuns() async throws {
        let directory = try traceDirectory("regions-random")
        let started = Date()
        let runs = Conformance.TraceValidationTests.sampleSize("REGION_TRACE_RUNS", default: 2)
        let scripted = try await offPool { Result { try Self.readerAcrossSynchronize() } }.get()
        try scripted.write(to: directory)
        var events = scripted.entries.count
        for seed in 0..<runs {
            events += try await Self.recordRandomRun(
                seed: seed, operations: 40, teardown: SynchronizeThenDrop(), name: "Regions_\(String(format: "%03d", seed))",
                directory: directory
            ).entries.count
        }
        let verdicts = try await Self.verdicts(in: directory, events: events, since: started, label: "fixed order")
        #expect(verdicts.count == runs + 1)
        for (name, verdict) in verdicts.sorted(by: { $0.key < $1.key }) where !verdict.accepted {
            Issue.record("\(verdict.line)\nrerun: Spec/check-traces.sh \(directory.path) \(name)")
        }
    }

    /// A reader looks the region up inside a read section of its own and
    /// stays there, holding its reference, until the deregistration has
    /// recorded `SyncStart`, then 50 ms more; then it puts and leaves. The
    /// deregistration's synchronize must wait for that section: a
    /// deregistration that records `SyncEnd` first (a synchronize that does
    /// not wait for the table's readers) is rejected there. The reader's
    /// reference keeps the count above zero throughout, so such a bug shows
    /// in the trace, not as a crash. Over ``MembarrierRCU``, count atomic.
    static func readerAcrossSynchronize() throws -> RegionTraceModule {
        let recorder = MemoryRegionTraceRecorder()
        let table = MemoryRegionTable<MembarrierRCU>(
            capacity: 1, deregistrationTimeout: 10, teardown: SynchronizeThenDrop(), recorder: recorder)
        let region = try table.register(length: 16, atomicCount: true)
        let syncStart = RegionTraceEvent.region(.deregistrationStep(region.key, .syncStart))
        let inside = Latch()
        let reader = JoinableThread(name: "reader") {
            recorder.nameCurrentThread("reader")
            recorder.readSection(MembarrierRCU.self) {
                guard let reference = table.lookup(region.key) else { return }
                inside.open()
                let started = eventually(seconds: 60) {
                    recorder.recordedSoFar.contains { $0.event == syncStart && $0.end != nil }
                }
                #expect(started, "the deregistration did not reach its synchronize")
                // Time for a deregistration that does not wait for this
                // section to get ahead of it.
                usleep(50_000)
                reference.put()
            }
        }
        #expect(inside.wait(seconds: 60))
        let deregistered = Latch()
        let deregistration = JoinableThread(name: "deregistration") {
            if (try? table.deregister(region)) != nil { deregistered.open() }
        }
        reader.join()
        deregistration.join()
        #expect(deregistered.isOpen)
        return RegionTraceModule(name: "Scripted_reader_across_synchronize", entries: recorder.trace, table: table, regions: [region])
    }

    /// The orders `Spec/MemoryRegion.tla` refutes, each in random runs like
    /// those above (with percpu counts), are rejected where the
    /// deregistration first leaves `Order`.
    @Test("random runs of the refuted orders are rejected")
    func randomBuggyRuns() async throws {
        let directory = try traceDirectory("regions-refuted")
        let started = Date()
        let runs = Conformance.TraceValidationTests.sampleSize("REGION_TRACE_BUGGY_RUNS", default: 1)
        let orders: [(name: String, teardown: any MemoryRegionTeardown, firstStepOutOfOrder: String)] = [
            ("PutBeforeGracePeriod", PutBeforeGracePeriod(), "Kill"),
            ("NoSynchronize", NoSynchronize(), "PutTable"),
            ("IsZeroShortcut", IsZeroShortcut {}, "IsZeroCheck"),
        ]
        var events = 0
        for order in orders {
            for seed in 100..<(100 + runs) {
                // Shorter runs: the trace is rejected at its first
                // deregistration.
                events += try await Self.recordRandomRun(
                    seed: seed, operations: 20, teardown: order.teardown, atomicCounts: false, name: "\(order.name)_\(seed)",
                    directory: directory
                ).entries.count
            }
        }
        let verdicts = try await Self.verdicts(in: directory, events: events, since: started, label: "refuted orders")
        #expect(verdicts.count == orders.count * runs)
        for order in orders {
            for seed in 100..<(100 + runs) {
                let line = verdicts["\(order.name)_\(seed)"]?.line ?? "no verdict"
                #expect(verdicts["\(order.name)_\(seed)"]?.accepted == false, "\(line)")
                #expect(line.contains("[a |-> \"\(order.firstStepOutOfOrder)\""), "rejected elsewhere: \(line)")
            }
        }
    }
}
