import Foundation
import Testing

/// Walks a `PercpuRef` along every edge of a state graph of
/// `Spec/MBTPercpuRef.tla`, comparing the ref's representation (the shared
/// count and its bias, the per-thread counters, the mode flags, the switch
/// in flight, releases, the grace periods and the switch's callback) with
/// the spec's state after every step.
struct PercpuRefExplorer {
    var graph: StateGraph
    let threads: [String]
    /// The configuration's `MaxHeld`.
    let maxHeld: Int
    /// A run ends after this many steps, so that fresh refs and threads
    /// are used along the way.
    let stepsPerRun: Int
    private(set) var coveredEdges: Set<Edge> = []
    private(set) var visitedNodes: Set<Int> = []
    private(set) var runs = 0
    private(set) var steps = 0
    private(set) var workersReplaced = 0
    private var refusalsChecked: Set<Int> = []
    private(set) var refusals = 0

    private var search: StateGraph.PathSearch

    typealias Edge = StateGraph.Edge

    init(graph: StateGraph, threads: [String], maxHeld: Int, stepsPerRun: Int = 400) {
        self.graph = graph
        search = StateGraph.PathSearch(graph)
        self.threads = threads
        self.maxHeld = maxHeld
        self.stepsPerRun = stepsPerRun
    }

    /// The spec step from state `from` to its successor `to`, read off
    /// what changed.
    mutating func step(from: Int, to: Int) -> SpecStep {
        let u = graph.state(from), v = graph.state(to)
        let gpBefore = u["rcuGp"]!["sched"]!["active"]!, gpAfter = v["rcuGp"]!["sched"]!["active"]!
        if gpBefore != gpAfter { return SpecStep(gpAfter.boolValue! ? "GracePeriodStart" : "GracePeriodEnd") }
        for thread in threads {
            let key = TLAValue.model(thread)
            let pendingBefore = u["pending"]![key]!.stringValue!, pendingAfter = v["pending"]![key]!.stringValue!
            switch (pendingBefore, pendingAfter) {
            case ("none", "inc"): return SpecStep("AcquireSeesPercpu", thread: thread)
            case ("none", "dec"): return SpecStep("PutSeesPercpu", thread: thread)
            case (_, "none") where pendingBefore != "none": return SpecStep("PercpuOpDone", thread: thread)
            default: break
            }
            let heldBefore = u["held"]![key]!.intValue!, heldAfter = v["held"]![key]!.intValue!
            if heldAfter < heldBefore { return SpecStep("PutAtomic", thread: thread) }
            if heldAfter > heldBefore { return SpecStep("TryAcquireAtomic", thread: thread) }
        }
        let refBefore = u["ref"]!, refAfter = v["ref"]!
        if u["initialRef"] != v["initialRef"] {
            if v["initialRef"]!.boolValue! == false { return SpecStep("Kill") }
            return SpecStep(refBefore["releases"]!.intValue! > 0 ? "Reinit" : "Resurrect")
        }
        if refBefore["switching"]!.boolValue! && !refAfter["switching"]!.boolValue! { return SpecStep("SwitchConfirm") }
        if !refBefore["forceAtomic"]!.boolValue! && refAfter["forceAtomic"]!.boolValue! { return SpecStep("SwitchToAtomic") }
        return SpecStep("SwitchToPercpu")
    }

    mutating func path(from start: Int, to goal: (Int) -> Bool) -> [Edge]? {
        search.path(from: start, to: goal)
    }

    /// Covers every edge, one run after another.
    mutating func exploreAll() throws {
        while true {
            // Nodes with an edge not covered yet, as the edges stand now.
            func wanted() -> (Int) -> Bool {
                let covered = coveredEdges, successors = graph.successors
                return { node in successors[node].contains { !covered.contains(Edge(from: node, to: $0)) } }
            }
            guard path(from: graph.initial[0], to: wanted()) != nil else { return }
            runs += 1
            let run = try PercpuModelRun(threads: threads)
            var current = graph.initial[0]
            var trail: [SpecStep] = []
            visitedNodes.insert(current)
            try compare(run, with: current, after: trail)
            var stepsThisRun = 0
            while stepsThisRun < stepsPerRun, let route = path(from: current, to: wanted()) {
                let goal = graph.successors[route.last?.to ?? current].first {
                    !coveredEdges.contains(Edge(from: route.last?.to ?? current, to: $0))
                }!
                for edge in route + [Edge(from: route.last?.to ?? current, to: goal)] {
                    current = try take(edge, on: run, trail: &trail)
                    stepsThisRun += 1
                }
            }
            // End with no thread inside an operation.
            if let route = path(from: current, to: { [graph] in
                !graph.labels[$0].contains("\"inc\"") && !graph.labels[$0].contains("\"dec\"")
            }) {
                for edge in route { current = try take(edge, on: run, trail: &trail) }
            }
            try run.finish()
        }
    }

    /// Takes `edge` on the implementation and checks the state it reaches.
    mutating func take(_ edge: Edge, on run: PercpuModelRun, trail: inout [SpecStep]) throws -> Int {
        let intended = step(from: edge.from, to: edge.to)
        trail.append(intended)
        do {
            try run.perform(intended, in: graph.state(edge.from))
        } catch {
            throw ConformanceFailure("\(error)\npath: \(trail.map(\.description).joined(separator: ", "))")
        }
        coveredEdges.insert(edge)
        visitedNodes.insert(edge.to)
        steps += 1
        try compare(run, with: edge.to, after: trail)
        try checkRefusals(run, at: edge.to, after: trail)
        // Now and then a thread that is not inside an operation exits and
        // another takes its place (and a slot of its own): the counts the
        // old one left must still count.
        if intended.action == "PercpuOpDone", steps % 3 == 0, let thread = intended.thread {
            try run.replaceWorker(thread)
            workersReplaced += 1
            try compare(run, with: edge.to, after: trail + [SpecStep("ThreadReplaced", thread: thread)])
        }
        return edge.to
    }

    /// The spec's refusals are stuttering steps, not edges: in atomic mode a
    /// tryGet of zero, and a tryGetLive of a dead ref, fail and change
    /// nothing. Once per state, every such call is made on the ref (by each
    /// thread not inside an operation that may take a reference) and must
    /// fail, leaving the state.
    private mutating func checkRefusals(_ run: PercpuModelRun, at node: Int, after trail: [SpecStep]) throws {
        guard refusalsChecked.insert(node).inserted else { return }
        let state = graph.state(node)
        guard state["ref"]!["atomicFlag"]!.boolValue! else { return }
        for thread in threads where state["pending"]![.model(thread)] == .string("none")
            && state["held"]![.model(thread)]!.intValue! < maxHeld
        {
            let acquires = graph.successors[node].contains { step(from: node, to: $0) == SpecStep("TryAcquireAtomic", thread: thread) }
            var refused = acquires ? [] : ["tryget"]
            if !acquires || state["ref"]!["dead"]!.boolValue! { refused.append("tryget_live") }
            for operation in refused {
                refusals += 1
                if try run.succeeds(operation, thread: thread) {
                    throw ConformanceFailure("""
                        after \(trail.map(\.description).joined(separator: ", ")):
                        \(operation) by \(thread) succeeded; the spec refuses it here
                        """)
                }
                try compare(run, with: node, after: trail + [SpecStep("Refused", thread: thread, detail: operation)])
            }
        }
    }

    mutating func compare(_ run: PercpuModelRun, with node: Int, after trail: [SpecStep]) throws {
        let spec = graph.state(node)
        let implementation: [String: TLAValue]
        do {
            implementation = try run.abstractState()
        } catch {
            throw ConformanceFailure("after \(trail.map(\.description).joined(separator: ", ")):\n\(error)")
        }
        let differences = spec.keys.sorted().filter { spec[$0] != implementation[$0] }
        if !differences.isEmpty {
            throw ConformanceFailure("""
                after \(trail.map(\.description).joined(separator: ", ")):
                \(differences.map { "\($0): spec \(spec[$0]!), implementation \(implementation[$0].map(\.description) ?? "missing")" }.joined(separator: "\n"))
                """)
        }
    }
}

extension Conformance {
/// `PercpuRef`'s representation checked against `Spec/PercpuRef.tla`'s:
/// the per-thread counters as its per-CPU counters, the bias, the switch
/// and its grace period (driven by ``ManualRCU``).
@Suite("PercpuRef's mechanism against PercpuRef.tla")
struct PercpuRefModelTests {
    @Test("every state and transition of MBTPercpuRef's graph, on PercpuRef")
    func coverage() throws {
        let config = "MBTPercpuRef"
        let graph = try StateGraph.load(config: config, module: "MBTPercpuRef")
        var explorer = PercpuRefExplorer(graph: graph, threads: ["t1", "t2"], maxHeld: 1)
        let started = Date()
        try explorer.exploreAll()
        let seconds = Date().timeIntervalSince(started)
        let report = """
            model-based: \(config): states \(explorer.visitedNodes.count)/\(graph.nodeCount), \
            transitions \(explorer.coveredEdges.count)/\(graph.edgeCount), \(explorer.runs) runs, \
            \(explorer.steps) steps, \(explorer.refusals) refused calls, \(explorer.workersReplaced) threads replaced, \(String(format: "%.1f", seconds)) s
            """
        print(report)
        #expect(explorer.visitedNodes.count == graph.nodeCount, "\(report)")
        #expect(explorer.coveredEdges.count == graph.edgeCount, "\(report)")
    }
}
}
