import ContextTable

/// Walks the implementation along every edge of a state graph of
/// `Spec/MBTLifecycle.tla`, comparing states after every step.
struct ModelExplorer {
    var graph: StateGraph
    let bounds: ModelBounds
    let reclamation: any ContextReclamation
    private(set) var coveredEdges: Set<Edge> = []
    private(set) var visitedNodes: Set<Int> = []
    /// The nodes where the implementation's state was compared with the
    /// spec's (the others were passed through inside one step).
    private(set) var comparedNodes: Set<Int> = []
    private(set) var runs = 0
    private(set) var steps = 0
    /// Edges the test gave up on, and per node how many of its out-edges
    /// are neither covered nor given up: the nodes a route may head for.
    private var givenUp: Set<Edge> = []
    private var openEdges: [Int]
    private var search: StateGraph.PathSearch

    typealias Edge = StateGraph.Edge

    init(graph: StateGraph, bounds: ModelBounds, reclamation: any ContextReclamation) {
        self.graph = graph
        self.bounds = bounds
        self.reclamation = reclamation
        openEdges = graph.successors.map(\.count)
        search = StateGraph.PathSearch(graph)
    }

    // MARK: Reading the graph

    /// The spec step from state `from` to its successor `to`, read off
    /// what changed.
    mutating func step(from: Int, to: Int) -> SpecStep {
        let u = graph.state(from), v = graph.state(to)
        if u["rcuGp"] != v["rcuGp"], u["rcuGp"]!["rcu"]!["active"] != v["rcuGp"]!["rcu"]!["active"] {
            return SpecStep(v["rcuGp"]!["rcu"]!["active"]!.boolValue! ? "GracePeriodStart" : "GracePeriodEnd")
        }
        for thread in bounds.threadNames where u["reader"]![.model(thread)] != v["reader"]![.model(thread)] {
            let before = u["reader"]![.model(thread)]!, after = v["reader"]![.model(thread)]!
            let context = (after["phase"] == .string("idle") ? before : after)["ctx"]!.description
            switch (before["phase"]!.stringValue!, after["phase"]!.stringValue!) {
            case ("idle", "loaded"):
                let slot = bounds.slotNames.first { u["table"]![.model($0)] == .model(context) }
                return SpecStep("LookupLoad", context: context, thread: thread, slot: slot)
            case ("loaded", "holding"): return SpecStep("LookupTrygetLiveOk", context: context, thread: thread)
            case ("loaded", "idle"): return SpecStep("LookupTrygetLiveFails", context: context, thread: thread)
            default: return SpecStep("LookupPut", context: context, thread: thread)
            }
        }
        for context in bounds.contextNames {
            let key = TLAValue.model(context)
            let before = u["ctxState"]![key]!.stringValue!, after = v["ctxState"]![key]!.stringValue!
            guard before == after else {
                switch (before, after) {
                case ("unused", "reserved"):
                    return SpecStep("CreateReserve", context: context, detail: v["users"]![key]!["mode"]!.stringValue!)
                case ("unused", "failed"): return SpecStep("CreateFails", context: context)
                case ("reserved", "live"):
                    let slot = bounds.slotNames.first { v["table"]![.model($0)] == key }
                    return SpecStep("CreatePublish", context: context, slot: slot)
                case ("reserved", "failed"): return SpecStep("CreateFailsTableInsert", context: context)
                case ("live", "dying"): return SpecStep("Destroy", context: context)
                default: return SpecStep("FreeWork", context: context)
                }
            }
        }
        let readyBefore = u["rcuCallbacks"]!["rcu"]!["ready"]!.setValue!
        let readyAfter = v["rcuCallbacks"]!["rcu"]!["ready"]!.setValue!
        if let ran = readyBefore.subtracting(readyAfter).first, case .tuple(let parts) = ran {
            let kind = parts[0].stringValue!, context = parts[1].description
            return kind == "free"
                ? SpecStep("FreeRcuCallback", context: context)
                : SpecStep("RefSwitchConfirm", context: context, detail: kind)
        }
        for context in bounds.contextNames {
            let key = TLAValue.model(context)
            let ranBefore = u["releaseRan"]![key]!.setValue!, ranAfter = v["releaseRan"]![key]!.setValue!
            if let release = ranAfter.subtracting(ranBefore).first {
                return SpecStep(release == .string("users") ? "UsersRelease" : "ReqsRelease", context: context)
            }
            let flightBefore = u["inFlight"]![key]!.intValue!, flightAfter = v["inFlight"]![key]!.intValue!
            if flightAfter > flightBefore { return SpecStep("Submit", context: context) }
            if flightAfter < flightBefore { return SpecStep("Complete", context: context) }
            let headBefore = u["ring"]![key]!["head"]!.intValue!, headAfter = v["ring"]![key]!["head"]!.intValue!
            // Slots credited back: a reap of the events the head moved
            // past (a reap that credits nothing is the same edge as the
            // user writing the head).
            if v["reqsAvail"]![key]!.intValue! > u["reqsAvail"]![key]!.intValue! {
                let capacity = bounds.maxRequests + 1
                return SpecStep("Reap", context: context, detail: String((headAfter - headBefore + capacity) % capacity))
            }
            if headBefore != headAfter {
                return SpecStep("UserWritesRingHead", context: context, detail: String(headAfter))
            }
        }
        fatalError("state graph: no spec step explains edge \(from) -> \(to)")
    }

    private mutating func path(from start: Int, to goal: (Int) -> Bool) -> [Edge]? {
        search.path(from: start, to: goal)
    }

    private mutating func cover(_ edge: Edge) {
        if coveredEdges.insert(edge).inserted, !givenUp.contains(edge) { openEdges[edge.from] -= 1 }
    }

    // MARK: Walking

    /// Covers every edge it can, one run at a time; returns the edges the
    /// implementation could not be steered onto.
    mutating func exploreAll(maxRuns: Int = 100_000) throws -> Set<Edge> {
        var attempts: [Edge: Int] = [:]
        let isFinal = graph.successors.map(\.isEmpty)
        while runs < maxRuns {
            /// An edge out of `node` that is neither covered nor given up.
            func wantedEdge(from node: Int) -> Edge? {
                graph.successors[node].lazy.map { Edge(from: node, to: $0) }
                    .first { !coveredEdges.contains($0) && !givenUp.contains($0) }
            }
            let start = graph.initial[0]
            guard path(from: start, to: { [openEdges] in openEdges[$0] > 0 }) != nil else { break }
            runs += 1
            let run = try ModelRun(bounds: bounds, reclamation: reclamation)
            var current = start
            var trail: [SpecStep] = []
            visitedNodes.insert(current)
            try compare(run, with: current, after: trail)
            while let route = path(from: current, to: { [openEdges] in openEdges[$0] > 0 }) {
                let target = route.last.map(\.to) ?? current
                guard let goal = wantedEdge(from: target) else { break }
                current = try follow(route + [goal], from: current, run: run, trail: &trail)
                if !coveredEdges.contains(goal) {
                    // The implementation left the route every time: the
                    // test reports the edge as one it could not take.
                    attempts[goal, default: 0] += 1
                    if attempts[goal]! >= 3, givenUp.insert(goal).inserted { openEdges[goal.from] -= 1 }
                }
            }
            // Drive the run to a final state, so that it ends clean.
            if let route = path(from: current, to: { isFinal[$0] }) {
                current = try follow(route, from: current, run: run, trail: &trail)
            }
            guard graph.successors[current].isEmpty else {
                throw ConformanceFailure("could not reach a final state; path: \(trail)")
            }
            do {
                try run.finish()
            } catch {
                throw ConformanceFailure("\(error)\npath: \(trail.map(\.description).joined(separator: ", "))")
            }
        }
        return givenUp
    }

    /// Checks that the implementation's state is `node`'s.
    private mutating func compare(_ run: ModelRun, with node: Int, after trail: [SpecStep]) throws {
        let spec = graph.state(node)
        comparedNodes.insert(node)
        let implementation = run.abstractState(spec: spec)
        let differences = spec.keys.sorted().filter { spec[$0] != implementation[$0] }
        if !differences.isEmpty {
            throw ConformanceFailure("""
                after \(trail.map(\.description).joined(separator: ", ")):
                \(differences.map { "\($0): spec \(spec[$0]!), implementation \(implementation[$0].map(\.description) ?? "missing")" }.joined(separator: "\n"))
                """)
        }
    }

    /// Takes the edges of `route` that the test chooses (from states where
    /// the implementation rests), following what the implementation does.
    /// Stops early if the implementation leaves the route.
    private mutating func follow(_ route: [Edge], from start: Int, run: ModelRun, trail: inout [SpecStep]) throws -> Int {
        var current = start
        var remaining = route[...]
        while let edge = remaining.first {
            remaining = remaining.dropFirst()
            let intended = step(from: edge.from, to: edge.to)
            let next = remaining.first.map { step(from: $0.from, to: $0.to) }
            let taken = try run.perform(intended, in: graph.state(current), then: next)
            guard let first = taken.first, intended.admits(first) else {
                throw ConformanceFailure(
                    "the test asked for \(intended); the implementation did \(taken.map(\.description))\npath: \(trail.map(\.description).joined(separator: ", "))")
            }
            var specQueued: [TLAValue] = []
            var specFreeCallbacks: [String] = []
            for observed in taken {
                trail.append(observed)
                let candidates = graph.successors[current].filter { step(from: current, to: $0).admits(observed) }
                let preferred = route.first { $0.from == current }?.to
                guard let next = candidates.first(where: { $0 == preferred }) ?? candidates.first else {
                    throw ConformanceFailure("""
                        the implementation did \(observed), which the spec does not allow here
                        path: \(trail.map(\.description).joined(separator: ", "))
                        state: \(graph.labels[current])
                        """)
                }
                let queuedBefore = graph.state(current)["rcuCallbacks"]!["rcu"]!["queued"]!.setValue!
                let queuedAfter = graph.state(next)["rcuCallbacks"]!["rcu"]!["queued"]!.setValue!
                specQueued += queuedAfter.subtracting(queuedBefore).sorted { $0.description < $1.description }
                if observed.action == "FreeRcuCallback" { specFreeCallbacks.append(observed.context!) }
                cover(Edge(from: current, to: next))
                current = next
                visitedNodes.insert(current)
                steps += 1
            }
            do {
                try run.nameNewCallbacks(specQueued: specQueued, specFreeCallbacks: specFreeCallbacks)
            } catch {
                throw ConformanceFailure("\(error)\npath: \(trail.map(\.description).joined(separator: ", "))")
            }
            try compare(run, with: current, after: trail)
            // Steps taken inline may have covered the next edges of the
            // route; go on from where the implementation is, if the route
            // passes there.
            guard let resume = remaining.firstIndex(where: { $0.from == current }) else { break }
            remaining = remaining[resume...]
        }
        return current
    }
}
