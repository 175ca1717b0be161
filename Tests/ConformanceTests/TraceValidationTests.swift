@testable import ContextTable
import Dispatch
import Foundation
import PercpuRef
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

/// A recorded run, written as a module of `Spec/TraceLifecycle.tla` for TLC.
struct TraceModule {
    var name: String
    /// The recorded steps, sorted by first ticket.
    var entries: [LifecycleTraceRecorder.Entry]
    let slots: Int
    let maxRequests: Int
    let budget: Int
    /// The implementation's state at the end, compared with the spec's;
    /// nil: not compared (a run stopped in the middle).
    let final: FinalState?
    /// Whether the run's flavor is QSBR (its threads record their
    /// quiescent states).
    var quiescentStates = false

    init(
        name: String, entries: [LifecycleTraceRecorder.Entry], slots: Int, maxRequests: Int, budget: Int,
        final: FinalState?
    ) {
        self.name = name
        self.entries = entries
        self.slots = slots
        self.maxRequests = maxRequests
        self.budget = budget
        self.final = final
    }

    /// The records, with the tickets of each step.
    var records: [String] {
        entries.map { $0.tlaRecord }
    }

    var threads: [String] { Set(entries.compactMap(\.thread)).sorted() }

    var contexts: Int {
        max(final?.contexts.count ?? 0, entries.compactMap { $0.step.context.flatMap { Int($0.dropFirst()) } }.max() ?? 0)
    }

    /// The same steps, taken one after the other in the order of
    /// `entries`: for hand-edited traces.
    func sequential(named name: String) -> TraceModule {
        var module = self
        module.name = name
        module.entries = entries.enumerated().map { index, entry in
            LifecycleTraceRecorder.Entry(event: entry.event, thread: entry.thread, begin: 2 * index, end: 2 * index + 1)
        }
        return module
    }

    func write(to directory: URL) throws {
        try TraceCheckFiles(
            name: name, spec: "TraceLifecycle", records: records,
            definitions: [
                "TraceContexts == 1..\(contexts)",
                "TraceThreads == \(TraceCheckFiles.set(of: threads))",
                "TraceSlots == 0..\(slots - 1)",
                "TraceFinal == \(final?.tla(threads: "TraceThreads", slots: "TraceSlots") ?? TraceCheckFiles.noFinalState)",
            ],
            constants: [
                "Contexts <- TraceContexts", "Threads <- TraceThreads", "Slots <- TraceSlots",
                "MaxRequests = \(maxRequests)", "AioMaxNr = \(budget)",
                "Flavors = {\"rcu\"}", "TableFlavor = \"rcu\"", "RefFlavor = \"rcu\"",
                "RefInitModes = {\"percpu\", \"atomic\"}", "NoContext = 0", "Bug = \"None\"",
                "QSBR = \(quiescentStates ? "TRUE" : "FALSE")",
            ]
        ).write(to: directory)
    }
}

/// The implementation's state after a run, as `Spec/Lifecycle.tla`'s
/// variables (contexts by tag; refs as `PercpuRef.abstractState` maps
/// them), read once every thread has stopped.
struct FinalState {
    struct ContextState {
        var state: String
        var users: AbstractRefState?, reqs: AbstractRefState?
        var inFlight = 0, requestsAvailable = 0
    }
    var contexts: [ContextState]
    /// The tag of the context in each slot, 0 for none.
    var table: [Int]
    var budgetInUse: Int

    /// Reads `table`'s state; `recorder` kept the context objects.
    init<Flavor: RCUFlavor>(table: ContextTable<Flavor>, recorder: LifecycleTraceRecorder, contexts: Int) {
        var objects: [ObjectIdentifier: Int] = [:]
        self.contexts = (0..<contexts).map { index in
            let tag = index + 1
            // No object: the create failed before allocating one.
            guard let object = recorder.context(tag) as? Context<Flavor> else { return ContextState(state: "failed") }
            objects[ObjectIdentifier(object)] = tag
            // Abandoned after a failed insert: the spec forgets its refs.
            if object.isFreed && object.id.slot < 0 { return ContextState(state: "failed") }
            let state = object.isFreed ? "freed" : object.id.slot < 0 ? "reserved"
                : object.dead.load(ordering: .acquiring) ? "dying" : "live"
            return ContextState(
                state: state, users: object.users.abstractState, reqs: object.reqs.abstractState,
                inFlight: object.active.withLock { $0.count }, requestsAvailable: object.ring.availableSlots)
        }
        self.table = (0..<table.capacity).map { slot in table.occupant(ofSlot: slot).flatMap { objects[$0] } ?? 0 }
        budgetInUse = table.budgetInUse
    }

    /// The record of `TraceLifecycle.tla`'s `Final`.
    func tla(threads: String, slots: String) -> String {
        func ref(_ state: AbstractRefState?) -> String {
            guard let state else { return "NoRef" }
            let dead = state.isDead ? "TRUE" : "FALSE", forceAtomic = state.forceAtomic ? "TRUE" : "FALSE"
            return "[count |-> \(state.count), mode |-> \"\(state.mode.rawValue)\", dead |-> \(dead), "
                + "forceAtomic |-> \(forceAtomic), releases |-> \(state.releases)]"
        }
        func perContext(_ value: (ContextState) -> String) -> String {
            "<<" + contexts.map(value).joined(separator: ", ") + ">>"
        }
        func releaseRan(_ context: ContextState) -> String {
            var ran: [String] = []
            if (context.users?.releases ?? 0) > 0 { ran.append("\"users\"") }
            if (context.reqs?.releases ?? 0) > 0 { ran.append("\"reqs\"") }
            return "{" + ran.joined(separator: ", ") + "}"
        }
        let slotTuple = "<<" + table.map(String.init).joined(separator: ", ") + ">>"
        let fields: [String] = [
            "ctxState |-> " + perContext { "\"\($0.state)\"" },
            "table |-> [s \\in \(slots) |-> \(slotTuple)[s + 1]]",
            "aioNr |-> \(budgetInUse)",
            "users |-> " + perContext { ref($0.users) },
            "reqs |-> " + perContext { ref($0.reqs) },
            "releaseRan |-> " + perContext(releaseRan),
            "inFlight |-> " + perContext { String($0.inFlight) },
            "reqsAvail |-> " + perContext { String($0.requestsAvailable) },
            // Every free the run queued has run (the run waits for that).
            "work |-> " + perContext { _ in "FALSE" },
            "frees |-> " + perContext { $0.state == "freed" ? "1" : "0" },
            "reader |-> [t \\in \(threads) |-> Idle]",
        ]
        return "[" + fields.joined(separator: ",\n    ") + "]"
    }
}

/// TLC's verdict on each trace in `directory` (`Spec/check-traces.sh`):
/// the name, whether it was accepted, and the script's line. TLC runs for
/// seconds: the wait is off the cooperative pool, which other tests need.
func checkTraces(in directory: URL) async throws -> [String: (accepted: Bool, line: String)] {
    let path = repositoryRoot.appendingPathComponent("Spec/check-traces.sh").path
    let output = try await offPool { Result { try runProcess(path, [directory.path]) } }.get()
    guard output.status == 0 else {
        throw ConformanceFailure("check-traces.sh failed:\n\(output.standardOutput)\(output.standardError)")
    }
    var verdicts: [String: (Bool, String)] = [:]
    for line in output.standardOutput.split(separator: "\n") {
        let words = line.split(separator: " ")
        guard words.count >= 2 else { continue }
        verdicts[String(words[1]).trimmingCharacters(in: CharacterSet(charactersIn: ":"))] = (words[0] == "accepted", String(line))
    }
    return verdicts
}

/// Where a test writes its traces: `.build/traces/<suite>` under the
/// package, emptied first.
func traceDirectory(_ name: String) throws -> URL {
    let directory = repositoryRoot.appendingPathComponent(".build/traces/\(name)")
    try? FileManager.default.removeItem(at: directory)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}


extension Conformance {
@Suite("Trace validation of real runs by TLC")
struct TraceValidationTests {
    static let slots = 3, maxRequests = 2, budget = 4

    /// A recorded run and the state it ended in.
    struct RecordedRun {
        var entries: [LifecycleTraceRecorder.Entry]
        var final: FinalState
        var quiescentStates = false

        func module(named name: String) -> TraceModule {
            var module = TraceModule(
                name: name, entries: entries, slots: slots, maxRequests: maxRequests, budget: budget, final: final)
            module.quiescentStates = quiescentStates
            return module
        }
    }

    /// Runs `body` on a thread that may enter read sections of `Flavor`:
    /// a QSBR thread registers for it.
    static func asReader<Flavor: RCUFlavor>(_: Flavor.Type, _ body: () -> Void) {
        guard Flavor.self == QuiescentStateRCU.self else { return body() }
        QuiescentStateRCU.registerThread()
        defer { QuiescentStateRCU.unregisterThread() }
        body()
    }

    /// Threads look contexts up, submit, complete and destroy them at
    /// random, on real threads over a real liburcu flavor, with nothing
    /// ordering their steps but the code itself; then every context is
    /// destroyed and freed. Returns the recorded run and its final state.
    ///
    /// The threads start together and mostly run flat out, so that a
    /// context is freed (most refs start atomic: the free then runs on the
    /// thread that drops the last reference, not a grace period later)
    /// while other threads are inside their lookups' read sections: where
    /// a free without a grace period shows.
    ///
    /// A reclamation other than ``DoubleBounce`` frees through a
    /// ``ManualExecutor`` drained only once the threads are done: the bug
    /// shows in the trace (the grace-period callback right after the
    /// release), and no thread of the run can reach a context whose ring
    /// is already gone, which would stop the process (`checkAlive`).
    static func randomRun<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, seed: UInt64, operations: Int, reclamation: any ContextReclamation = DoubleBounce()
    ) -> RecordedRun {
        let recorder = LifecycleTraceRecorder(keepsContexts: true)
        let heldFrees = reclamation is DoubleBounce ? nil : ManualExecutor()
        let table = ContextTable<Flavor>(
            capacity: slots, requestBudget: budget, cleanupExecutor: heldFrees, reclamation: reclamation,
            recorder: recorder)
        let known = Lock<[ContextID]>([])
        let inFlight = Lock<[ContextRequest<Flavor>]>([])
        let creates = Counter()
        runThreadsTogether(3) { index in
            asReader(Flavor.self) {
                var random = SplitMix(seed: seed &* 1_000_003 &+ UInt64(index))
                for _ in 0..<operations {
                    varySchedule(using: &random)
                    let choice = Int.random(in: 0..<20, using: &random)
                    let someID = known.withLock { $0.randomElement(using: &random) }
                    // Half the operations run inside a read section of
                    // the thread's own, as an application's may (QSBR
                    // threads' lookups stay in theirs until the quiescent
                    // state anyway).
                    let inSection = Flavor.self != QuiescentStateRCU.self && Bool.random(using: &random)
                    func operation() {
                    switch choice {
                    case 0..<3:
                        let requests = Int.random(in: 0..<12, using: &random) == 0 ? 0 : maxRequests
                        let atomic = Int.random(in: 0..<4, using: &random) != 0
                        creates.increment()
                        if let id = try? table.create(maxRequests: requests, atomicReferences: atomic) {
                            known.withLock { $0.append(id) }
                        }
                    case 3..<13:
                        guard let someID, let lease = table.lookup(someID) else { return }
                        for _ in 0..<Int.random(in: 0...2, using: &random) {
                            if let request = try? lease.submit() { inFlight.withLock { $0.append(request) } }
                        }
                        // Reaping credits ring slots back: without it a
                        // context takes MaxRequests submissions in all.
                        if Bool.random(using: &random) { _ = lease.reapEvents(maximum: Int.random(in: 0...2, using: &random)) }
                        if Int.random(in: 0..<5, using: &random) == 0 { try? table.destroy(lease) }
                    case 13..<17:
                        let request = inFlight.withLock {
                            $0.isEmpty ? nil : $0.remove(at: Int.random(in: 0..<$0.count, using: &random))
                        }
                        request?.complete()
                    default:
                        if let someID { try? table.destroy(someID) }
                    }
                    }
                    if inSection { recorder.readSection(Flavor.self, operation) } else { operation() }
                    quiescentState(Flavor.self, recorder)
                }
            }
        }
        // The requests left complete, then the table's shutdown, with a
        // quiescent state after each destroy (its lookup); the recorder
        // keeps every context object for the final state, so the table's
        // own wait would wait in vain for their deallocation: the frees
        // are waited for here.
        asReader(Flavor.self) {
            for request in inFlight.withLock({ $0 }) { request.complete() }
            inFlight.withLock { $0 = [] }
            for id in table.liveContexts {
                try? table.destroy(id)
                quiescentState(Flavor.self, recorder)
            }
        }
        let settled = eventually(seconds: 60) {
            if let heldFrees { heldFrees.pending.forEach(heldFrees.run) }
            let statistics = table.statistics
            return statistics.live == 0 && statistics.pendingFrees == 0
        }
        #expect(settled, "run \(seed) did not finish: \(table.statistics)")
        let final = FinalState(table: table, recorder: recorder, contexts: creates.value)
        recorder.forgetContexts()
        return RecordedRun(entries: recorder.trace, final: final, quiescentStates: Flavor.self == QuiescentStateRCU.self)
    }

    /// Reports a quiescent state on a QSBR thread, recorded first.
    static func quiescentState<Flavor: RCUFlavor>(_: Flavor.Type, _ recorder: LifecycleTraceRecorder) {
        guard Flavor.self == QuiescentStateRCU.self else { return }
        recorder.quiescentState()
        QuiescentStateRCU.quiescentState()
    }

    /// One random run of `reclamation` per seed, a quarter of them over
    /// each liburcu flavor, written to `directory`; returns TLC's verdicts.
    static func checkRandomRuns(
        _ seeds: Range<Int>, reclamation: any ContextReclamation, prefix: String, directory: URL
    ) async throws -> [String: (accepted: Bool, line: String)] {
        var events = 0
        let started = Date()
        for seed in seeds {
            let operations = 80
            let run: RecordedRun = await offPool {
                switch seed % 4 {
                case 0: Self.randomRun(MembarrierRCU.self, seed: UInt64(seed), operations: operations, reclamation: reclamation)
                case 1: Self.randomRun(QuiescentStateRCU.self, seed: UInt64(seed), operations: operations, reclamation: reclamation)
                case 2: Self.randomRun(BulletproofRCU.self, seed: UInt64(seed), operations: operations, reclamation: reclamation)
                default: Self.randomRun(MemoryBarrierRCU.self, seed: UInt64(seed), operations: operations, reclamation: reclamation)
                }
            }
            events += run.entries.count
            // 80 operations of 3 threads give a few hundred events, fewer
            // when many lookups miss: a run that recorded under 100 did
            // not run its workload.
            #expect(run.entries.count >= 100, "run \(seed) recorded only \(run.entries.count) events")
            try run.module(named: "\(prefix)_\(String(format: "%03d", seed))").write(to: directory)
        }
        let recorded = Date()
        let verdicts = try await checkTraces(in: directory)
        print("""
            trace validation (\(prefix)): \(verdicts.values.filter { !$0.accepted }.count)/\(seeds.count) traces rejected, \
            \(events) events; runs \(String(format: "%.1f", recorded.timeIntervalSince(started))) s, \
            TLC \(String(format: "%.1f", Date().timeIntervalSince(recorded))) s
            """)
        #expect(verdicts.count == seeds.count)
        return verdicts
    }

    /// How many random runs each test records: a sample in `make test`,
    /// more in `make trace-power` (`TRACE_RUNS`, `TRACE_BUGGY_RUNS`).
    static func sampleSize(_ variable: String, default value: Int) -> Int {
        ProcessInfo.processInfo.environment[variable].flatMap { Int($0) } ?? value
    }

    /// A reader stopped inside its read section, after loading the context,
    /// while the context is destroyed and its last reference dropped: the
    /// free must wait for it. Refs start atomic, so no mode switch (whose
    /// own grace period would also wait for the reader) hides the bug.
    static func readerInsideTeardown() throws -> RecordedRun {
        let parking = LookupParking()
        let recorder = parking.recorder()
        let table = ContextTable<MembarrierRCU>(
            capacity: 1, requestBudget: 1, cleanupExecutor: nil, reclamation: DoubleBounce(), recorder: recorder)
        let id = try table.create(maxRequests: 1, atomicReferences: true)
        let holder = table.lookup(id)
        parking.parkNextLookup()
        let reader = JoinableThread(name: "reader") { _ = table.lookup(id) }
        parking.waitUntilParked()
        try table.destroy(holder!)
        _ = consume holder
        // The free is queued behind a grace period the reader holds up.
        parking.resume()
        reader.join()
        #expect(eventually(seconds: 60) { table.statistics.live == 0 && table.statistics.pendingFrees == 0 })
        let final = FinalState(table: table, recorder: recorder, contexts: 1)
        recorder.forgetContexts()
        let statistics = table.waitForAll()
        #expect(statistics.isClean, "\(statistics)")
        return RecordedRun(entries: recorder.trace, final: final)
    }

    @Test("negative controls: traces that free before the last reader leaves are rejected")
    func negativeControls() async throws {
        let directory = try traceDirectory("controls")
        let run = try await offPool { Result { try Self.readerInsideTeardown() } }.get()
        let module = TraceModule(
            name: "Control_recorded", entries: run.entries, slots: 1, maxRequests: 1, budget: 1, final: run.final)
        try module.write(to: directory)
        // Edit: the free (its grace-period callback and the work) moved to
        // just after the reqs release, before the reader leaves; the steps
        // then taken one at a time, in that order.
        let steps = run.entries.map(\.step)
        guard let release = steps.firstIndex(where: { $0.action == "ReqsRelease" }),
              let callback = steps.firstIndex(where: { $0.action == "FreeRcuCallback" }),
              let work = steps.firstIndex(where: { $0.action == "FreeWork" }),
              let readerLeaves = steps.firstIndex(where: { $0.action == "LookupTrygetLiveFails" }),
              release < readerLeaves, readerLeaves < callback, callback < work
        else {
            Issue.record("the scenario did not record the expected order: \(steps)")
            return
        }
        var edited = run.entries
        let free = [edited[callback], edited[work]]
        edited.remove(at: work)
        edited.remove(at: callback)
        edited.insert(contentsOf: free, at: readerLeaves)
        var early = module
        early.entries = edited
        try early.sequential(named: "Control_freed_before_reader_leaves").write(to: directory)
        // Edit: the implementation's final state with a request still
        // charged against the budget (a leak the events do not show).
        var leaked = run.final
        leaked.budgetInUse += 1
        try TraceModule(
            name: "Control_budget_leaked_at_end", entries: run.entries, slots: 1, maxRequests: 1, budget: 1,
            final: leaked
        ).write(to: directory)
        // Recorded from the implementation with the 2018 bug (no grace
        // period before the free), in the same scenario.
        let buggy = try Self.buggyReaderInsideTeardown()
        try TraceModule(name: "Control_free_from_release", entries: buggy, slots: 1, maxRequests: 1, budget: 1, final: nil)
            .write(to: directory)

        let verdicts = try await checkTraces(in: directory)
        #expect(verdicts["Control_recorded"]?.accepted == true, "\(verdicts["Control_recorded"]?.line ?? "no verdict")")
        for name in ["Control_freed_before_reader_leaves", "Control_free_from_release"] {
            let line = verdicts[name]?.line ?? "no verdict"
            #expect(verdicts[name]?.accepted == false, "\(line)")
            #expect(line.contains("FreeRcuCallback"), "rejected elsewhere than at the free: \(line)")
        }
        let leakedLine = verdicts["Control_budget_leaked_at_end"]?.line ?? "no verdict"
        #expect(leakedLine.contains("final state") && leakedLine.contains("aioNr"), "\(leakedLine)")
    }

    /// The reader scenario on the buggy variant (``FreeWithoutGracePeriod``)
    /// over ``ModelFlavor``: the free runs while the reader is inside its
    /// section. The reader is left parked (its context is freed: letting it
    /// go on would be the use after free), in a domain of its own; the run
    /// stops there, so its final state is not compared.
    static func buggyReaderInsideTeardown() throws -> [LifecycleTraceRecorder.Entry] {
        let run = try ModelRun.readerInsideTeardown(reclamation: FreeWithoutGracePeriod())
        return run.recorder.trace
    }
}
}

/// The random runs of ``Conformance/TraceValidationTests``, outside the
/// serialized conformance suite: they run on real flavors and share no
/// ``ModelFlavor``, so they overlap the model-based walks instead of
/// waiting for them.
@Suite("Trace validation of random runs by TLC")
struct RandomRunTraceValidationTests {
    @Test("random runs on real threads are behaviours of the spec")
    func randomRuns() async throws {
        let directory = try traceDirectory("random")
        let verdicts = try await Conformance.TraceValidationTests.checkRandomRuns(
            0..<Conformance.TraceValidationTests.sampleSize("TRACE_RUNS", default: 4), reclamation: DoubleBounce(), prefix: "Trace",
            directory: directory)
        for (name, verdict) in verdicts.sorted(by: { $0.key < $1.key }) where !verdict.accepted {
            Issue.record("\(verdict.line)\nrerun: Spec/check-traces.sh \(directory.path) \(name)")
        }
    }

    /// The 2018 bug (``FreeWithoutGracePeriod``) in random runs like those
    /// above, with no scripted schedule: the free runs without waiting for
    /// the readers inside their sections, and enough runs catch a reader
    /// there for TLC to reject them.
    @Test("random runs of the 2018 bug are rejected")
    func randomBuggyRuns() async throws {
        let directory = try traceDirectory("random-buggy")
        let runs = Conformance.TraceValidationTests.sampleSize("TRACE_BUGGY_RUNS", default: 3)
        let verdicts = try await Conformance.TraceValidationTests.checkRandomRuns(
            1_000..<(1_000 + runs), reclamation: FreeWithoutGracePeriod(), prefix: "Buggy", directory: directory)
        let rejected = verdicts.values.filter { !$0.accepted }
        #expect(rejected.count * 3 >= runs, "only \(rejected.count) of \(runs) runs of the bug rejected")
        for verdict in rejected {
            #expect(verdict.line.contains("FreeRcuCallback"), "rejected elsewhere than at the free: \(verdict.line)")
        }
    }
}
