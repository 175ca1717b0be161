import Foundation
import MemoryRegions
import Testing
import TestSupport

/// Walks a `MemoryRegionTable` along every edge of the state graph of
/// `Spec/MemoryRegion.tla` under `Spec/MBTMemoryRegion.cfg`, comparing the
/// implementation's state (the region's phase, slot, count, dependents,
/// release and free; the readers; the grace periods and callbacks) with
/// the spec's after every step.
///
/// The routes are planned on the spec's graph doubled by one bit the spec
/// does not have: whether the deregistration's own kill dropped the last
/// reference, so that it is the thread running the release. Until the
/// release is taken it cannot time out (the spec's `Timeout` from those
/// states is covered from the same states reached otherwise).
struct MemoryRegionExplorer {
    var graph: StateGraph
    let threads: [String]
    let teardown: any MemoryRegionTeardown
    /// Spec variables left out of the comparison (a negative control's
    /// second run: rejected by the state, not only by the step's name).
    let ignoredVariables: Set<String>
    private(set) var coveredEdges: Set<Edge> = []
    private(set) var visitedNodes: Set<Int> = []
    private(set) var runs = 0
    private(set) var steps = 0
    /// The product graph: node `n + graph.nodeCount` is spec node `n` with
    /// the deregistration inside the release.
    private let successors: [[Int]]
    private var search: StateGraph.PathSearch
    private var order: [String]
    /// Alternates `ReaderPut` and `Adopt` where both lead to the same state.
    private var adoptNext = false

    typealias Edge = StateGraph.Edge

    init(graph: StateGraph, threads: [String], teardown: any MemoryRegionTeardown, ignoredVariables: Set<String> = []) throws {
        var graph = graph
        self.threads = threads
        self.teardown = teardown
        self.ignoredVariables = ignoredVariables
        order = try MemoryRegionSpec.order(bug: "None")
        let count = graph.nodeCount
        var successors = Array(repeating: [Int](), count: 2 * count)
        for node in 0..<count {
            for next in graph.successors[node] {
                let step = Self.step(from: node, to: next, graph: &graph, threads: threads, order: order)
                let dueBefore = graph.state(node)["ref"]![MemoryRegionModelRun.regionName]!["releases"]!
                let dueAfter = graph.state(next)["ref"]![MemoryRegionModelRun.regionName]!["releases"]!
                let deregistrationReleases = order.contains(Self.stepName(of: step.action)) && dueBefore != dueAfter
                successors[node].append(next + (deregistrationReleases ? count : 0))
                switch step.action {
                case "Timeout": break
                case "Release": successors[node + count].append(next)
                default: successors[node + count].append(next + count)
                }
            }
        }
        self.graph = graph
        self.successors = successors
        search = StateGraph.PathSearch(successors: successors)
    }

    /// A deregistration step's name in the spec's `Order` ("unpublish")
    /// from its action's ("Unpublish").
    static func stepName(of action: String) -> String { action.prefix(1).lowercased() + action.dropFirst() }

    /// The spec step from state `from` to its successor `to`, read off
    /// what changed.
    static func step(from: Int, to: Int, graph: inout StateGraph, threads: [String], order: [String]) -> SpecStep {
        let u = graph.state(from), v = graph.state(to)
        let r1 = MemoryRegionModelRun.regionName
        let activeBefore = u["rcuGp"]!["rcu"]!["active"]!, activeAfter = v["rcuGp"]!["rcu"]!["active"]!
        if activeBefore != activeAfter { return SpecStep(activeAfter.boolValue! ? "GracePeriodStart" : "GracePeriodEnd") }
        for thread in threads {
            let before = u["reader"]![.model(thread)]!["phase"]!.stringValue!
            let after = v["reader"]![.model(thread)]!["phase"]!.stringValue!
            switch (before, after) {
            case ("idle", "loaded"): return SpecStep("LookupLoad", thread: thread)
            case ("loaded", "holding"): return SpecStep("LookupGet", thread: thread)
            case ("holding", "idle"):
                let adopted = u["dependents"]![r1] != v["dependents"]![r1]
                return SpecStep(adopted ? "Adopt" : "ReaderPut", thread: thread)
            default: break
            }
        }
        switch (u["regionState"]![r1]!.stringValue!, v["regionState"]![r1]!.stringValue!) {
        case ("unused", "live"):
            return SpecStep("Register", detail: v["ref"]![r1]!["mode"]!.stringValue!)
        case ("live", "deregistering"): return SpecStep("Deregister")
        case ("deregistering", "timedOut"): return SpecStep("Timeout")
        case ("timedOut", "deregistering"): return SpecStep("Retry")
        case ("deregistering", "freed"): return SpecStep("WaitAndFree")
        default: break
        }
        if u["step"] != v["step"] {
            let name = order[u["step"]![r1]!.intValue! - 1]
            return SpecStep(name.prefix(1).uppercased() + name.dropFirst())  // "unpublish": Unpublish
        }
        if u["released"] != v["released"] { return SpecStep("Release") }
        if u["ref"] != v["ref"] { return SpecStep("RefSwitchConfirm") }
        fatalError("state graph: no spec step explains edge \(from) -> \(to)")
    }

    private func specEdge(_ edge: Edge) -> Edge {
        Edge(from: edge.from % graph.nodeCount, to: edge.to % graph.nodeCount)
    }

    /// Covers every edge of the spec's graph, one run (one region's life)
    /// after another.
    mutating func exploreAll() throws {
        let start = graph.initial[0]
        while true {
            guard search.path(from: start, to: wantedNow()) != nil else { return }
            runs += 1
            let run = try MemoryRegionModelRun(threads: threads, teardown: teardown)
            var current = start
            var trail: [SpecStep] = []
            visitedNodes.insert(current)
            try compare(run, with: current, after: trail)
            while let route = search.path(from: current, to: wantedNow()) {
                let at = route.last?.to ?? current
                let goal = self.successors[at].first { !coveredEdges.contains(specEdge(Edge(from: at, to: $0))) }!
                for edge in route + [Edge(from: at, to: goal)] { current = try take(edge, on: run, trail: &trail) }
            }
            let successors = successors
            if let route = search.path(from: current, to: { successors[$0].isEmpty }) {
                for edge in route { current = try take(edge, on: run, trail: &trail) }
            }
            guard successors[current].isEmpty else {
                throw ConformanceFailure("could not reach a final state; path: \(describe(trail))")
            }
            do {
                try run.finish()
            } catch {
                throw ConformanceFailure("\(error)\npath: \(describe(trail))")
            }
        }
    }

    /// Whether a product node has a spec edge not covered yet, as the
    /// edges stand now.
    private func wantedNow() -> (Int) -> Bool {
        let covered = coveredEdges, successors = successors, count = graph.nodeCount
        return { node in successors[node].contains { !covered.contains(Edge(from: node % count, to: $0 % count)) } }
    }

    private func describe(_ trail: [SpecStep]) -> String { trail.map(\.description).joined(separator: ", ") }

    /// Takes `edge` on the implementation and checks the state it reaches.
    private mutating func take(_ edge: Edge, on run: MemoryRegionModelRun, trail: inout [SpecStep]) throws -> Int {
        let spec = specEdge(edge)
        var intended = Self.step(from: spec.from, to: spec.to, graph: &graph, threads: threads, order: order)
        if intended.action == "ReaderPut", graph.state(spec.from)["cleaned"]![MemoryRegionModelRun.regionName] == .bool(true) {
            // Once the dependents are dropped, an adoption puts its
            // reference at once: the same step. Take each in turn.
            if adoptNext { intended.action = "Adopt" }
            adoptNext.toggle()
        }
        trail.append(intended)
        do {
            try run.perform(intended)
        } catch {
            throw ConformanceFailure("\(error)\npath: \(describe(trail))")
        }
        coveredEdges.insert(spec)
        visitedNodes.insert(spec.to)
        steps += 1
        try compare(run, with: spec.to, after: trail)
        if run.deregistrationInRelease != (edge.to >= graph.nodeCount) {
            throw ConformanceFailure("""
                after \(describe(trail)): the deregistration \(run.deregistrationInRelease ? "is" : "is not") \
                the thread in the release; the route assumed otherwise
                """)
        }
        return edge.to
    }

    private mutating func compare(_ run: MemoryRegionModelRun, with node: Int, after trail: [SpecStep]) throws {
        let spec = graph.state(node % graph.nodeCount)
        let implementation = run.abstractState()
        let differences = spec.keys.sorted().filter { !ignoredVariables.contains($0) && spec[$0] != implementation[$0] }
        if !differences.isEmpty {
            throw ConformanceFailure("""
                after \(describe(trail)):
                \(differences.map { "\($0): spec \(spec[$0]!), implementation \(implementation[$0].map(\.description) ?? "missing")" }.joined(separator: "\n"))
                """)
        }
    }
}

extension Conformance {
/// `MemoryRegionTable` checked against `Spec/MemoryRegion.tla`: every
/// state and transition of the model-based graph, with the deregistration
/// stepped between its steps (the table's step hook) and its grace period
/// driven by ``SteppedSynchronizeRCU``; and the orders the spec refutes,
/// planted in the table, rejected.
@Suite("MemoryRegionTable against MemoryRegion.tla")
struct MemoryRegionModelTests {
    static let config = "MBTMemoryRegion"
    static let threads = ["t1", "t2"]

    @Test("every state and transition of MBTMemoryRegion's graph, on MemoryRegionTable")
    func coverage() throws {
        let loading = Date()
        let graph = try StateGraph.load(config: Self.config, module: "MemoryRegion")
        var explorer = try MemoryRegionExplorer(graph: graph, threads: Self.threads, teardown: SynchronizeThenDrop())
        let started = Date()
        try explorer.exploreAll()
        let seconds = Date().timeIntervalSince(started)
        let report = """
            model-based: \(Self.config): states \(explorer.visitedNodes.count)/\(graph.nodeCount), \
            transitions \(explorer.coveredEdges.count)/\(graph.edgeCount), \(explorer.runs) runs, \
            \(explorer.steps) steps, \(String(format: "%.1f", seconds)) s \
            (graph: \(String(format: "%.1f", started.timeIntervalSince(loading))) s)
            """
        print(report)
        #expect(explorer.visitedNodes.count == graph.nodeCount, "\(report)")
        #expect(explorer.coveredEdges.count == graph.edgeCount, "\(report)")
    }

    @Test("negative controls: the orders the spec refutes leave the spec", arguments: [
        ("PutBeforeGracePeriod", PutBeforeGracePeriod() as any MemoryRegionTeardown),
        ("NoSynchronize", NoSynchronize()),
        ("IsZeroShortcut", IsZeroShortcut {}),
    ])
    func negativeControl(name: String, teardown: any MemoryRegionTeardown) throws {
        let graph = try StateGraph.load(config: Self.config, module: "MemoryRegion")
        // First as the coverage test compares; then with the spec's `step`
        // (which the table's step hook reports) left out: the region's
        // state alone must leave the spec too.
        for ignored in [[], ["step"]] as [Set<String>] {
            var explorer = try MemoryRegionExplorer(
                graph: graph, threads: Self.threads, teardown: teardown, ignoredVariables: ignored)
            do {
                try explorer.exploreAll()
                Issue.record("\(name) passed the model-based test (ignoring \(ignored))")
            } catch {
                let message = String(describing: error)
                print("model-based: negative control \(name)\(ignored.isEmpty ? "" : " (step ignored)") rejected: "
                    + message.replacingOccurrences(of: "\n", with: " | "))
                #expect(message.contains(": spec "), "failed for another reason: \(message)")
            }
        }
    }
}
}
