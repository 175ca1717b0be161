// Under ThreadSanitizer the conformance suite does not run (see the
// Makefile); elsewhere the stepping needs x86's trap flag.
#if arch(x86_64) && canImport(Glibc)
import Foundation
@testable import PercpuRef
import TestSupport
import Testing
import URCUTesting

/// A spec step of `PercpuRef.tla` taken on the implementation one
/// instruction at a time, with another thread's get, tryGet, tryGetLive or
/// put made between two of its instructions.
///
/// The spec makes each of its steps atomic. Where the implementation takes
/// a step in several instructions (the end of the switch: the sum, the
/// bias, the switch's own put; a put: the subtraction, and the test of
/// zero), another thread can act in between, and the state both leave
/// must still be one the spec reaches by taking the two steps in some
/// order. This catches the bugs that make a step non-atomic in a way that
/// matters: the bias leaving the count apart from the sum, a put that
/// decides on a value it reads again after its subtraction, a dead flag
/// read apart from the count it guards.
struct InterleavingCase: CustomStringConvertible {
    /// From the initial state to `node`.
    let path: [PercpuRefExplorer.Edge]
    let node: Int
    /// The step taken one instruction at a time, on the test's thread.
    let stepped: SpecStep
    let steppedEdge: PercpuRefExplorer.Edge
    /// The other thread's call: a spec thread and "get", "tryget",
    /// "tryget_live" or "put".
    let other: (thread: String, operation: String)
    /// Whether some order of the two steps releases the ref.
    let crossesZero: Bool

    var description: String { "\(stepped) with \(other.operation)(\(other.thread))" }
}

extension PercpuRefExplorer {
    /// The steps the test takes one instruction at a time: every step that
    /// is one call on the ref, and one thread's put or tryGet in atomic
    /// mode.
    static let steppedActions: Set<String> = [
        "Kill", "SwitchConfirm", "SwitchToAtomic", "SwitchToPercpu", "Resurrect", "Reinit", "PutAtomic",
        "TryAcquireAtomic",
    ]

    /// For each stepped step and other call, the state nearest the initial
    /// one where the spec allows both, preferring one where the two can
    /// take the ref to zero together.
    mutating func interleavingCases(stepping steppedThread: String, other otherThread: String, maxHeld: Int)
        -> [InterleavingCase]
    {
        var parent: [Int: Int] = [graph.initial[0]: graph.initial[0]]
        var order = [graph.initial[0]]
        var index = 0
        while index < order.count {
            for successor in graph.successors[order[index]] where parent[successor] == nil {
                parent[successor] = order[index]
                order.append(successor)
            }
            index += 1
        }
        func path(to node: Int) -> [Edge] {
            var edges: [Edge] = []
            var current = node
            while current != graph.initial[0] {
                edges.append(Edge(from: parent[current]!, to: current))
                current = parent[current]!
            }
            return edges.reversed()
        }
        var chosen: [String: InterleavingCase] = [:]
        for node in order {
            let state = graph.state(node)
            guard !graph.labels[node].contains("\"inc\""), !graph.labels[node].contains("\"dec\"") else { continue }
            let otherHeld = state["held"]![.model(otherThread)]!.intValue!
            var operations = ["tryget", "tryget_live"].filter { _ in otherHeld < maxHeld }
            if otherHeld > 0 { operations.append("put") }
            for successor in graph.successors[node] {
                let stepped = step(from: node, to: successor)
                guard Self.steppedActions.contains(stepped.action), stepped.thread ?? steppedThread == steppedThread else {
                    continue
                }
                for operation in operations {
                    let key = "\(stepped.action) \(operation)"
                    if let existing = chosen[key], existing.crossesZero { continue }
                    let releasesBefore = state["ref"]!["releases"]!.intValue!
                    let crosses = orders(from: node, stepped: stepped, other: otherThread, delta: operation == "put" ? -1 : 1)
                        .contains { graph.state($0)["ref"]!["releases"]!.intValue! > releasesBefore }
                    if chosen[key] == nil || crosses {
                        chosen[key] = InterleavingCase(
                            path: path(to: node), node: node, stepped: stepped,
                            steppedEdge: Edge(from: node, to: successor), other: (otherThread, operation),
                            crossesZero: crosses)
                    }
                }
            }
        }
        return chosen.keys.sorted().map { chosen[$0]! }
    }

    /// The states the spec reaches from `node` by taking `stepped` once and
    /// the steps of thread `other` that change what it holds by `delta`,
    /// in any order (the other thread's percpu get or put is two steps,
    /// which may surround `stepped`).
    mutating func orders(from node: Int, stepped: SpecStep, other: String, delta: Int) -> Set<Int> {
        let key = TLAValue.model(other)
        let heldBefore = graph.state(node)["held"]![key]!.intValue!
        var results: Set<Int> = []
        var frontier: [(node: Int, steppedTaken: Bool)] = [(node, false)]
        for _ in 0..<3 {
            var next: [(node: Int, steppedTaken: Bool)] = []
            for (current, steppedTaken) in frontier {
                for successor in graph.successors[current] {
                    let taken = step(from: current, to: successor)
                    if taken == stepped, !steppedTaken {
                        next.append((successor, true))
                    } else if taken.thread == other {
                        next.append((successor, steppedTaken))
                    }
                }
            }
            for (candidate, steppedTaken) in next where steppedTaken {
                let state = graph.state(candidate)
                if state["pending"]![key] == .string("none"), state["held"]![key]!.intValue! == heldBefore + delta {
                    results.insert(candidate)
                }
            }
            frontier = next
        }
        return results
    }

    /// Runs `interleaving`: once to find the instructions of the stepped
    /// step that change the ref's count or mode word, then once per point
    /// near them (every instruction within `dense`, every `stride`-th
    /// between), each on a fresh ref. Returns what went wrong, and the
    /// number of points tried.
    mutating func interleave(
        _ interleaving: InterleavingCase, dense: Int = 12, stride: Int = 16
    ) throws -> (failures: [String], points: Int) {
        var trail: [SpecStep] = []
        let calibration = try replay(interleaving.path, trail: &trail)
        let steppedCall = try calibration.singleAction(interleaving.stepped, operation: steppedOperation(interleaving))
        // Stepped as in the interleavings below.
        ParkingRCU.untrackedStepped.store(PercpuModelRCU.currentThread, ordering: .relaxed)
        var changes: [Int] = []
        var instructions = 0
        var last = (calibration.ref.count.load(ordering: .relaxed), calibration.ref.countersAndMode.load(ordering: .relaxed))
        _ = stepInstructions(of: { _ = steppedCall.body() }, interleavingWhen: { steps in
            instructions = steps
            let now = (calibration.ref.count.load(ordering: .relaxed), calibration.ref.countersAndMode.load(ordering: .relaxed))
            if now != last {
                changes.append(steps)
                last = now
            }
            return false
        }, {})
        ParkingRCU.untrackedStepped.store(0, ordering: .relaxed)
        print("calibration \(interleaving): \(instructions) instructions, changes at \(changes)")
        // Warm up the other call's path, which may run in a signal handler
        // (no first-use locks there).
        let otherCall = try calibration.singleAction(otherStep(interleaving), operation: interleaving.other.operation)
        try calibration.worker(interleaving.other.thread).perform { _ = otherCall.body() }
        try calibration.finish()

        var points: Set<Int> = []
        let low = max(1, (changes.first ?? 1) - dense), high = min(instructions, (changes.last ?? instructions) + dense)
        for point in Swift.stride(from: low, through: high, by: stride) { points.insert(point) }
        for change in changes {
            for point in max(1, change - dense)...min(instructions, change + dense) { points.insert(point) }
        }
        var failures: [String] = []
        for point in points.sorted() {
            if let failure = try interleave(interleaving, at: point, changes: changes) { failures.append(failure) }
        }
        return (failures, points.count)
    }

    private func steppedOperation(_ interleaving: InterleavingCase) -> String? {
        switch interleaving.stepped.action {
        case "PutAtomic": "put"
        case "TryAcquireAtomic": "tryget"
        default: nil
        }
    }

    private func otherStep(_ interleaving: InterleavingCase) -> SpecStep {
        SpecStep(interleaving.other.operation == "put" ? "PutAtomic" : "TryAcquireAtomic", thread: interleaving.other.thread)
    }

    /// A fresh run taken along `path`, each state checked.
    mutating func replay(_ path: [Edge], trail: inout [SpecStep]) throws -> PercpuModelRun {
        let run = try PercpuModelRun(threads: threads)
        try compare(run, with: graph.initial[0], after: trail)
        for edge in path { _ = try take(edge, on: run, trail: &trail) }
        return run
    }

    /// One interleaving: the other call made after instruction `point` of
    /// the stepped step. Returns a description of the failure, if any.
    private mutating func interleave(_ interleaving: InterleavingCase, at point: Int, changes: [Int]) throws -> String? {
        var trail: [SpecStep] = []
        let run = try replay(interleaving.path, trail: &trail)
        let steppedCall = try run.singleAction(interleaving.stepped, operation: steppedOperation(interleaving))
        let otherCall = try run.singleAction(otherStep(interleaving), operation: interleaving.other.operation)
        let otherBody = otherCall.body
        let worker = run.worker(interleaving.other.thread)
        let go = Latch(), done = Latch()
        let otherResult = HandedOver(true)
        ParkingRCU.untrackedOther.store(worker.threadID, ordering: .relaxed)
        ParkingRCU.untrackedStepped.store(PercpuModelRCU.currentThread, ordering: .relaxed)
        defer {
            ParkingRCU.untrackedOther.store(0, ordering: .relaxed)
            ParkingRCU.untrackedStepped.store(0, ordering: .relaxed)
        }
        let starter = JoinableThread {
            try? worker.perform {
                spinWait { go.isOpen }
                otherResult.value = otherBody()
                done.open()
            }
        }
        var steppedResult = true
        let interleavedAfter = stepInstructions(of: { steppedResult = steppedCall.body() }, interleavingWhen: { $0 == point }) {
            go.open()
            spinWait { done.isOpen }
        }
        go.open()
        starter.join()
        guard done.isOpen else { throw ConformanceFailure("\(interleaving): the other thread's call did not finish") }
        steppedCall.settle(steppedResult)
        otherCall.settle(otherResult.value)
        let implementation = try run.abstractState()
        let expected = otherResult.value
            ? orders(from: interleaving.node, stepped: interleaving.stepped, other: interleaving.other.thread,
                     delta: interleaving.other.operation == "put" ? -1 : 1)
            : [interleaving.steppedEdge.to]
        try run.finish()
        if expected.contains(where: { graph.state($0) == implementation }) { return nil }
        let spec = expected.sorted().map { graph.labels[$0] }.joined(separator: "\n or\n")
        let differences = expected.sorted().first.map { node -> String in
            let state = graph.state(node)
            return state.keys.sorted().filter { state[$0] != implementation[$0] }
                .map { "\($0): implementation \(implementation[$0]!.description)" }.joined(separator: "\n")
        } ?? "the spec allows no such result"
        return """
            \(interleaving) after instruction \(interleavedAfter.map(String.init) ?? "(none: after the step)") \
            (the step changes the count or mode at instructions \(changes)); \
            \(interleaving.other.operation) returned \(otherResult.value); path: \
            \(trail.map(\.description).joined(separator: ", ")):
            \(differences)
            spec allows:
            \(spec)
            """
    }
}

extension Conformance {
@Suite("PercpuRef's steps stay atomic when another thread acts between their instructions")
struct PercpuRefInterleavingTests {
    #if !URCU_TSAN
    @Test("each step of PercpuRef.tla that is one call, with another thread's call after any of its instructions")
    func everyInstruction() async {
        if ProcessInfo.processInfo.environment["PCPU_DIRECT"] != nil { try? PercpuRefInterleavingTests.interleaveAll(); return }
        await #expect(processExitsWith: .success) {
            do {
                try PercpuRefInterleavingTests.interleaveAll()
            } catch {
                Issue.record("\(error)")
            }
        }
    }
    #endif

    /// Every case of ``PercpuRefExplorer/interleavingCases(stepping:other:maxHeld:)``
    /// on `Spec/MBTPercpuRef.tla`'s graph; records the first failure of each.
    static func interleaveAll() throws {
        let started = Date()
        var explorer = PercpuRefExplorer(graph: try StateGraph.load(config: "MBTPercpuRef", module: "MBTPercpuRef"), threads: ["t1", "t2"])
        let cases = explorer.interleavingCases(stepping: "t1", other: "t2", maxHeld: 1)
        var points = 0
        for interleaving in cases {
            if let only = ProcessInfo.processInfo.environment["PCPU_ONLY"], !"\(interleaving)".contains(only) { continue }
            let caseStarted = Date()
            defer { print("case \(interleaving) crosses \(interleaving.crossesZero) path \(interleaving.path.count): \(Date().timeIntervalSince(caseStarted)) s") }
            let result = try explorer.interleave(interleaving)
            points += result.points
            print("points \(result.points)")
            if let first = result.failures.first {
                Issue.record("\(result.failures.count) of \(result.points) interleavings left the spec; the first:\n\(first)")
            }
        }
        print("""
            interleavings: \(cases.count) cases (\(cases.filter(\.crossesZero).count) crossing zero), \
            \(points) points, \(String(format: "%.1f", Date().timeIntervalSince(started))) s
            """)
    }
}
}
#endif
