@testable import ContextTable
import Dispatch
import Foundation
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

/// The grace-period domain of the table-growth model-based test.
enum GrowthModelDomain {}
typealias GrowthFlavor = ManualRCU<GrowthModelDomain>

/// A reader thread that performs a lookup's steps one command at a time,
/// staying inside its read section between them: the table pointer, then
/// (on the next command) the slot, then (on the next) the end of the
/// section. This is `lookup`'s path (`context(inSlot:in:)`), split where the
/// spec splits it.
final class GrowthReader: @unchecked Sendable {
    // @unchecked: every field is written by one side and read by the other
    // only across a semaphore hand-off.
    private let command = DispatchSemaphore(value: 0)
    private let done = DispatchSemaphore(value: 0)
    private var lookup: (table: ContextTable<GrowthFlavor>, slot: Int)?
    private var quitting = false
    private var thread: JoinableThread?
    private(set) var threadID: UInt = 0
    /// The lookup's progress, as the spec's `reader[t].phase` names it.
    private(set) var phase = "idle"
    private(set) var loadedTable: SlotTable<GrowthFlavor>?
    private(set) var found: ObjectIdentifier?

    init() {
        let started = DispatchSemaphore(value: 0)
        // Strong: a run abandoned by a failed check leaves the thread
        // parked, holding the reader; quit() breaks the cycle.
        thread = JoinableThread { [self] in
            threadID = GrowthFlavor.currentThread
            started.signal()
            run()
        }
        started.wait()
    }

    private func run() {
        while true {
            command.wait()
            if quitting { return }
            guard let (table, slot) = lookup else { continue }
            GrowthFlavor.read { section in
                table.table.dereference(in: section) { slots in
                    loadedTable = slots
                    phase = "table"
                    done.signal()
                    command.wait()
                    found = slots?.context(at: slot, in: section).map(ObjectIdentifier.init)
                    loadedTable = nil
                    phase = "slot"
                    done.signal()
                    command.wait()
                }
            }
            phase = "idle"
            found = nil
            lookup = nil
            done.signal()
        }
    }

    /// `LookupLoadTable`: enters a read section and loads the table pointer.
    func begin(on table: ContextTable<GrowthFlavor>, slot: Int) { lookup = (table, slot); step() }
    /// `LookupLoadSlot`, then `LookupEnd`.
    func step() {
        command.signal()
        if done.wait(timeout: .now() + 60) == .timedOut { fatalError("GrowthReader: a step took over 60 s") }
    }

    func quit() {
        precondition(phase == "idle", "the reader is inside a lookup")
        quitting = true
        command.signal()
        thread?.join()
        thread = nil
    }
}

/// One run of `ContextTable` over ``GrowthFlavor``, driven along the state
/// graph of `Spec/TableGrowth.tla`, and its state in the spec's terms.
final class GrowthModelRun {
    let table: ContextTable<GrowthFlavor>
    let reader = GrowthReader()
    private let executor = ManualExecutor()
    private var ids: [String: ContextID] = [:]
    private var contexts: [String: Context<GrowthFlavor>] = [:]
    /// The slot tables in the order they were published: the spec's 1, 2, ...
    private var tables: [SlotTable<GrowthFlavor>] = []
    /// The spec's name of each grace-period callback.
    private var callbacks: [Int: TLAValue] = [:]
    /// The context the reader's lookup is for.
    private var readerContext: String?
    let contextNames: [String]

    /// The table's growth: what the spec's `GrowPublish` runs.
    private let growth: any TableGrowth

    init(contextNames: [String], growth: any TableGrowth = GrowUnderTableLock()) {
        GrowthFlavor.reset()
        self.contextNames = contextNames
        self.growth = growth
        table = ContextTable(
            capacity: 1, maximumCapacity: 2, requestBudget: 10, cleanupExecutor: executor,
            reclamation: DoubleBounce(), recorder: nil, growth: growth)
        tables = [currentSlotTable]
    }

    private var currentSlotTable: SlotTable<GrowthFlavor> {
        GrowthFlavor.read { section in table.table.dereference(in: section) { $0! } }
    }

    /// Performs the implementation's part of the spec step `from` → `to`.
    func perform(from u: [String: TLAValue], to v: [String: TLAValue]) throws {
        let queuedBefore = Set(GrowthFlavor.snapshot.queued)
        func nameNewCallback(_ name: TLAValue) throws {
            let new = Set(GrowthFlavor.snapshot.queued).subtracting(queuedBefore)
            guard new.count == 1, let id = new.first else {
                throw ConformanceFailure("expected one new callback for \(name), found \(new.count)")
            }
            callbacks[id] = name
        }
        // Grace periods.
        let gpBefore = u["rcuGp"]!["rcu"]!["active"]!.boolValue!, gpAfter = v["rcuGp"]!["rcu"]!["active"]!.boolValue!
        if !gpBefore && gpAfter { return GrowthFlavor.startGracePeriod() }
        if gpBefore && !gpAfter { return GrowthFlavor.endGracePeriod() }
        // A callback run: a context's free, or an old table's.
        let readyBefore = u["rcuCallbacks"]!["rcu"]!["ready"]!.setValue!
        let readyAfter = v["rcuCallbacks"]!["rcu"]!["ready"]!.setValue!
        if let ran = readyBefore.subtracting(readyAfter).first {
            guard let id = callbacks.first(where: { $0.value == ran })?.key else {
                throw ConformanceFailure("no callback named \(ran)")
            }
            guard GrowthFlavor.runReadyCallback(id) else { throw ConformanceFailure("callback \(ran) is not ready") }
            // The double bounce's second half, in the same spec step.
            for job in executor.pending { executor.run(job) }
            return
        }
        // The reader.
        let readerBefore = u["reader"]![.model("t1")]!, readerAfter = v["reader"]![.model("t1")]!
        if readerBefore != readerAfter {
            switch readerAfter["phase"]!.stringValue! {
            case "table":
                let name = readerAfter["ctx"]!.description
                readerContext = name
                reader.begin(on: table, slot: ids[name]?.slot ?? -1)
            case "idle":
                reader.step()
                readerContext = nil
            default:
                reader.step()
            }
            return
        }
        // Creates and destroys.
        for name in contextNames {
            let before = u["ctxState"]![.model(name)]!.stringValue!, after = v["ctxState"]![.model(name)]!.stringValue!
            switch (before, after) {
            case ("unused", "live"):
                let id = try table.create(maxRequests: 1, atomicReferences: true)
                ids[name] = id
                contexts[name] = table.lookup(id)?.context
                return
            case ("live", "dead"):
                try table.destroy(ids[name]!)
                return try nameNewCallback(.tuple([.string("ctx"), .model(name)]))
            default:
                break
            }
        }
        // Growth: its start and its copies happen inside the publish, under
        // the table lock, where nothing the spec sees can interleave.
        if u["current"] != v["current"] {
            let full = currentSlotTable
            growth.grow(table, from: full)
            tables.append(currentSlotTable)
            return try nameNewCallback(.tuple([.string("table"), .int(u["current"]!.intValue!)]))
        }
        if u["growth"] != v["growth"] { return }
        throw ConformanceFailure("no implementation step for this spec step")
    }

    /// The implementation's state as the spec's variables, except the
    /// growth (inside one publish here) and the slots of tables that are not
    /// published yet or freed.
    func abstractState(like spec: [String: TLAValue]) -> [String: TLAValue] {
        func name(of object: ObjectIdentifier?) -> TLAValue {
            guard let object else { return .string("none") }
            return .model(contexts.first { ObjectIdentifier($0.value) == object }?.key ?? "unknown")
        }
        var state = spec
        var ctxState: [TLAValue: TLAValue] = [:], slotOf: [TLAValue: TLAValue] = [:]
        for name in contextNames {
            let context = contexts[name]
            let phase = context.map { $0.isFreed ? "freed" : $0.dead.load(ordering: .acquiring) ? "dead" : "live" }
            ctxState[.model(name)] = .string(phase ?? "unused")
            slotOf[.model(name)] = .int(ids[name].map { $0.slot + 1 } ?? 0)
        }
        state["ctxState"] = .function(ctxState)
        state["slotOf"] = .function(slotOf)
        let current = currentSlotTable
        let currentIndex = tables.firstIndex { $0 === current }.map { $0 + 1 } ?? 0
        state["current"] = .int(currentIndex)
        var tableStates: [TLAValue] = [], slots: [TLAValue] = []
        for (index, specSlots) in spec["slots"]!.tupleValue!.enumerated() {
            guard index < tables.count else {
                tableStates.append(.string("unused"))
                slots.append(specSlots)
                continue
            }
            let slotTable = tables[index]
            let freed = slotTable.isFreed
            tableStates.append(.string(index + 1 == currentIndex ? "current" : freed ? "freed" : "retired"))
            slots.append(freed ? specSlots : .tuple((0..<specSlots.tupleValue!.count).map {
                name(of: slotTable.occupant(ofSlot: $0))
            }))
        }
        state["tableState"] = .tuple(tableStates)
        state["slots"] = .tuple(slots)
        let loaded = reader.loadedTable.flatMap { loaded in tables.firstIndex { $0 === loaded } }
        state["reader"] = .function([.model("t1"): .record([
            "phase": .string(reader.phase),
            "ctx": readerContext.map { .model($0) } ?? .string("none"),
            "table": .int(loaded.map { $0 + 1 } ?? 0),
            "found": name(of: reader.found),
        ])])
        let rcu = GrowthFlavor.snapshot
        func names(_ ids: [Int]) -> TLAValue { .set(Set(ids.map { callbacks[$0] ?? .string("unnamed \($0)") })) }
        let threads = { (set: Set<UInt>) -> TLAValue in
            .set(Set(set.map { $0 == self.reader.threadID ? TLAValue.model("t1") : .string("thread \($0)") }))
        }
        state["rcuReaders"] = .record(["rcu": threads(rcu.readers)])
        state["rcuGp"] = .record(["rcu": .record([
            "active": .bool(rcu.isGracePeriodActive), "waitFor": threads(rcu.waitingFor),
        ])])
        state["rcuCallbacks"] = .record(["rcu": .record([
            "queued": names(rcu.queued), "waiting": names(rcu.waiting), "ready": names(rcu.ready),
        ])])
        return state
    }

    /// Ends the run: the reader leaves, every context is destroyed and
    /// freed, every old table freed.
    func finish() throws {
        while reader.phase != "idle" { reader.step() }
        reader.quit()
        for id in table.liveContexts { try table.destroy(id) }
        while GrowthFlavor.queuedCallbacks > 0 || !executor.pending.isEmpty {
            GrowthFlavor.completeGracePeriod()
            for job in executor.pending { executor.run(job) }
        }
        let statistics = table.statistics
        guard statistics.live == 0 && statistics.pendingFrees == 0 else {
            throw ConformanceFailure("run not clean at its end: \(statistics)")
        }
    }
}

extension Conformance {
/// `ContextTable`'s growth walked along every transition of
/// `Spec/MBTTableGrowth.cfg`'s state graph (`TableGrowth.tla`): creates,
/// destroys, the growth, a reader's two dereferences and grace periods,
/// each taken on the real table and compared with the spec's state.
@Suite("ContextTable's growth against TableGrowth.tla")
struct TableGrowthModelTests {
    @Test("every state and transition of MBTTableGrowth's graph, on ContextTable")
    func coverage() throws {
        let outcome = try Self.explore(growth: GrowUnderTableLock())
        print(outcome.report)
        #expect(outcome.visited == outcome.graphNodes, "\(outcome.report)")
        #expect(outcome.covered == outcome.graphEdges, "\(outcome.report)")
    }

    @Test("negative control: an old table freed without a grace period leaves the spec at the first growth")
    func oldTableFreedAtOnceIsRejected() throws {
        do {
            let outcome = try Self.explore(growth: FreeOldTableWithoutGracePeriod())
            Issue.record("the control conformed: \(outcome.report)")
        } catch let failure as ConformanceFailure {
            print("model-based: negative control rejected: \(failure.description.prefix(200))")
            #expect(failure.description.contains(#"expected one new callback for <<"table", 1>>, found 0"#), "\(failure)")
        }
    }

    struct Outcome {
        var visited = 0, covered = 0, graphNodes = 0, graphEdges = 0, runs = 0, steps = 0
        var report = ""
    }

    /// Covers every edge of the graph, one run after another, each on a
    /// fresh table that grows by `growth`; throws at the first state where
    /// the table and the spec differ.
    static func explore(growth: any TableGrowth) throws -> Outcome {
        var graph = try StateGraph.load(config: "MBTTableGrowth", module: "MCTableGrowth")
        var search = StateGraph.PathSearch(graph)
        var covered: Set<StateGraph.Edge> = [], visited: Set<Int> = []
        var outcome = Outcome(graphNodes: graph.nodeCount, graphEdges: graph.edgeCount)
        let started = Date()
        func wanted() -> (Int) -> Bool {
            let successors = graph.successors, done = covered
            return { node in successors[node].contains { !done.contains(StateGraph.Edge(from: node, to: $0)) } }
        }
        while search.path(from: graph.initial[0], to: wanted()) != nil {
            outcome.runs += 1
            let run = GrowthModelRun(contextNames: ["c1", "c2"], growth: growth)
            var current = graph.initial[0], stepsThisRun = 0
            visited.insert(current)
            while stepsThisRun < 200, let route = search.path(from: current, to: wanted()) {
                let last = route.last?.to ?? current
                let goal = graph.successors[last].first { !covered.contains(StateGraph.Edge(from: last, to: $0)) }!
                for edge in route + [StateGraph.Edge(from: last, to: goal)] {
                    let u = graph.state(edge.from), v = graph.state(edge.to)
                    do {
                        try run.perform(from: u, to: v)
                    } catch {
                        throw ConformanceFailure("run \(outcome.runs), step \(stepsThisRun + 1): \(error)")
                    }
                    let implementation = run.abstractState(like: v)
                    let differences = v.keys.sorted().filter { v[$0] != implementation[$0] }
                    if !differences.isEmpty {
                        throw ConformanceFailure("""
                            run \(outcome.runs), step \(stepsThisRun + 1):
                            \(differences.map { "\($0): spec \(v[$0]!), implementation \(implementation[$0]!)" }.joined(separator: "\n"))
                            """)
                    }
                    covered.insert(edge)
                    visited.insert(edge.to)
                    current = edge.to
                    outcome.steps += 1
                    stepsThisRun += 1
                }
            }
            try run.finish()
        }
        outcome.visited = visited.count
        outcome.covered = covered.count
        outcome.report = """
            model-based: MBTTableGrowth: states \(visited.count)/\(graph.nodeCount), \
            transitions \(covered.count)/\(graph.edgeCount), \(outcome.runs) runs, \(outcome.steps) steps, \
            \(String(format: "%.1f", Date().timeIntervalSince(started))) s
            """
        return outcome
    }
}
}

extension TLAValue {
    fileprivate var tupleValue: [TLAValue]? { if case .tuple(let value) = self { value } else { nil } }
}
