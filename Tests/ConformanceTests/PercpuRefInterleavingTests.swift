// Under ThreadSanitizer the conformance suite does not run (see the
// Makefile); elsewhere the stepping needs x86's trap flag.
#if arch(x86_64) && canImport(Glibc)
import Foundation
@testable import PercpuRef
import TestSupport
import Testing
import URCU
import URCUTesting

/// Where the other call falls: `offset` instructions after the stepped
/// step's change number `change` of the count or mode word (after its
/// start if nil).
struct InterleavingPoint {
    let change: Int?
    let offset: Int
}

/// Sees the ref's count, its mode word, or one thread's counter change,
/// one instruction at a time.
struct ChangeObserver {
    let ref: ModelRef
    let counters: UnsafeMutablePointer<ThreadCounters>?
    private var last = (0, UInt(0), 0, 0)

    init(_ ref: ModelRef, counters: UnsafeMutablePointer<ThreadCounters>?) {
        self.ref = ref
        self.counters = counters
        last = now
    }

    // A tuple, not an array: this runs in a signal handler, which must not
    // allocate.
    private var now: (Int, UInt, Int, Int) {
        (ref.count.load(ordering: .relaxed), ref.offsetAndMode.load(ordering: .relaxed),
         counters.map { $0.pointee.gets.load(ordering: .relaxed) } ?? 0,
         counters.map { $0.pointee.puts.load(ordering: .relaxed) } ?? 0)
    }

    /// Whether they changed since the last call.
    mutating func changed() -> Bool {
        let current = now
        defer { last = current }
        return current != last
    }
}

/// What one stepped run saw.
final class SteppedRun: @unchecked Sendable {
    var observer: ChangeObserver
    var changes: [Int] = []
    var instructions = 0
    var interleavedAfter: Int?
    var steppedResult = true
    var otherResult = true

    init(observer: ChangeObserver) { self.observer = observer }
}

/// A spec step of `PercpuRef.tla` that is one call on the ref, and another
/// thread's tryGet, tryGetLive or put: one of them taken on the
/// implementation one instruction at a time, the other made between two of
/// its instructions.
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
    /// The one-call step, and its edge from `node`.
    let step: SpecStep
    let stepEdge: PercpuRefExplorer.Edge
    /// The thread's call: a spec thread and "tryget", "tryget_live" or
    /// "put".
    let call: (thread: String, operation: String)
    /// Whether some order of the two releases the ref.
    let crossesZero: Bool
    /// Which is stepped: `step` on the test's thread (`call` then runs on
    /// its thread's worker), or `call` on that worker (`step` then runs on
    /// a thread of its own).
    var callIsStepped = false

    var description: String {
        let call = "\(self.call.operation)(\(self.call.thread))"
        return callIsStepped ? "\(call) stepped, with \(step)" : "\(step) stepped, with \(call)"
    }
}

extension PercpuRefExplorer {
    /// The steps the test takes one instruction at a time: every step that
    /// is one call on the ref, and one thread's put or tryGet in atomic
    /// mode.
    static let steppedActions: Set<String> = [
        "Kill", "SwitchConfirm", "SwitchToAtomic", "SwitchToPercpu", "Resurrect", "Reinit", "PutAtomic",
        "TryAcquireAtomic",
    ]

    /// For each one-call step, other thread's call and mode, the states
    /// nearest the initial one where the spec allows the two in either
    /// order, and the order matters: one where they can take the ref to
    /// zero together, one where the order decides whether the call
    /// succeeds. (Where they commute and
    /// cannot release, a step is not stepped through: every point costs
    /// thousands of signals.)
    mutating func interleavingCases(stepping steppedThread: String, other otherThread: String) -> [InterleavingCase] {
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
            let operations = ["put", "tryget_live", "tryget"].filter {
                $0 == "put" ? otherHeld > 0 : otherHeld < maxHeld
            }
            for successor in graph.successors[node] {
                let stepped = step(from: node, to: successor)
                guard Self.steppedActions.contains(stepped.action), stepped.thread ?? steppedThread == steppedThread
                else { continue }
                for operation in operations {
                    // The other call first (or failing), then the stepped step;
                    // and the other way round.
                    let otherOutcomes = outcomes(of: operation, by: otherThread, from: node)
                    var otherFirst: Set<Int> = []
                    var legal = true
                    for reached in otherOutcomes {
                        let next = graph.successors[reached].filter { step(from: reached, to: $0) == stepped }
                        if next.isEmpty { legal = false }
                        otherFirst.formUnion(next)
                    }
                    guard legal else { continue }
                    let steppedFirst = outcomes(of: operation, by: otherThread, from: successor)
                    let releasesBefore = state["ref"]!["releases"]!.intValue!
                    let crosses = otherFirst.union(steppedFirst).contains {
                        graph.state($0)["ref"]!["releases"]!.intValue! > releasesBefore
                    }
                    // Whether the order decides if the other call succeeds.
                    let decides = (otherOutcomes == [node]) != (steppedFirst == [successor])
                    // In each mode: the call takes another path in each.
                    let mode = state["ref"]!["atomicFlag"]!.boolValue! ? "atomic" : "percpu"
                    let key = "\(stepped.action) \(operation) \(crosses ? "crossing zero" : "deciding the call") \(mode)"
                    // The nearest state with references on the per-thread
                    // counters if any (for the switch: a sum to add).
                    func rank(_ candidate: InterleavingCase) -> Int {
                        graph.labels[candidate.node].contains("pcpu |-> (t1 :> 0 @@ t2 :> 0)") ? 1 : 0
                    }
                    let candidate = InterleavingCase(
                        path: path(to: node), node: node, step: stepped,
                        stepEdge: Edge(from: node, to: successor), call: (otherThread, operation),
                        crossesZero: crosses)
                    guard crosses || decides, chosen[key].map({ rank(candidate) < rank($0) }) ?? true else { continue }
                    chosen[key] = candidate
                }
            }
        }
        // Each pair both ways: a race inside the call (its dead-flag test,
        // its test of zero) shows only when the call is the stepped one.
        return chosen.keys.sorted().flatMap { key -> [InterleavingCase] in
            var callStepped = chosen[key]!
            callStepped.callIsStepped = true
            return [chosen[key]!, callStepped]
        }
    }

    /// The states in which thread `other`'s call `operation`, made from
    /// `node` with no other step, has returned: after its one step in atomic
    /// mode or its two in percpu mode; `node` itself if the spec does not let
    /// it succeed there (a tryGet of zero fails: a stuttering step).
    mutating func outcomes(of operation: String, by other: String, from node: Int) -> Set<Int> {
        // The graph's edges do not say which acquisition took them: a
        // tryGetLive also needs the ref alive if in atomic mode (the guard
        // of TryAcquireAtomic(t, "tryget_live")).
        let ref = graph.state(node)["ref"]!
        if operation == "tryget_live", ref["atomicFlag"]!.boolValue!, ref["dead"]!.boolValue! { return [node] }
        let completed = orders(from: node, stepped: nil, other: other, delta: operation == "put" ? -1 : 1)
        return completed.isEmpty ? [node] : completed
    }

    /// The states the spec reaches from `node` by taking `stepped` once (if
    /// given) and the steps of thread `other` that change what it holds by
    /// `delta`, in any order (the other thread's percpu get or put is two
    /// steps, which may surround `stepped`).
    mutating func orders(from node: Int, stepped: SpecStep?, other: String, delta: Int) -> Set<Int> {
        let key = TLAValue.model(other)
        let heldBefore = graph.state(node)["held"]![key]!.intValue!
        var results: Set<Int> = []
        var frontier: [(node: Int, steppedTaken: Bool)] = [(node, stepped == nil)]
        for _ in 0..<(stepped == nil ? 2 : 3) {
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
    /// step that change the ref's count or mode word, then once per point,
    /// each on a fresh ref. The points are counted from those changes, as
    /// seen in the same run (how many instructions lead to them varies a
    /// little from run to run): right after each change, and each of the
    /// `after` instructions that follow (where the other call can fall
    /// between a change and what the step does with it); and `spread`
    /// points across each gap between two changes (a moment between two
    /// changes lasts all the instructions between them), or across the
    /// whole step if it changes neither. Every instruction of every step
    /// would take minutes: each costs a signal. Returns what went wrong,
    /// and the number of points tried.
    mutating func interleave(
        _ interleaving: InterleavingCase, after: Int = 4, spread: Int = 2
    ) throws -> (failures: [String], points: Int) {
        // Once at full speed first, so that no first use (a lazy global, a
        // table's growth) lengthens the calibration, and the other call's
        // path holds no first-use lock when it runs in a signal handler.
        var trail: [SpecStep] = []
        let warmUp = try replay(interleaving.path, trail: &trail)
        let warmUpStep = try warmUp.singleAction(interleaving.step, operation: stepOperation(interleaving))
        let warmUpCall = try warmUp.singleAction(callStep(interleaving), operation: interleaving.call.operation)
        _ = warmUpStep.body()
        try warmUp.worker(interleaving.call.thread).perform { _ = warmUpCall.body() }
        try warmUp.finish()
        trail = []
        let calibration = try race(interleaving, at: nil, trail: &trail)
        try calibration.run.finish()
        let changes = calibration.seen.changes, instructions = calibration.seen.instructions
        var points: [InterleavingPoint] = []
        for (index, change) in changes.enumerated() {
            points += (0...after).map { InterleavingPoint(change: index, offset: $0) }
            let gap = (index + 1 < changes.count ? changes[index + 1] : instructions) - change
            if gap > 2 * after {
                points += (1...spread).map { InterleavingPoint(change: index, offset: after + (gap - after) * $0 / (spread + 1)) }
            }
        }
        if changes.isEmpty {
            points = (1...spread + 2).map { InterleavingPoint(change: nil, offset: instructions * $0 / (spread + 3)) }
        }
        var failures: [String] = []
        for point in points {
            if let failure = try interleave(interleaving, at: point) { failures.append(failure) }
        }
        return (failures, points.count)
    }

    /// Whether two states agree on everything but where the references
    /// are counted: the shared count or the per-thread counters (the
    /// refinement mapping of `Proofs/PercpuRefRefinement.tla`, with no
    /// thread inside an operation). A call that overlaps the switch back
    /// to percpu mode may count on either, as in the kernel.
    static func sameReferences(_ spec: [String: TLAValue], _ implementation: [String: TLAValue]) -> Bool {
        func references(_ ref: TLAValue) -> Int {
            guard case .function(let counters) = ref["pcpu"]! else { return 0 }
            return ref["count"]!.intValue! + counters.values.reduce(0) { $0 + $1.intValue! }
        }
        func rest(_ ref: TLAValue) -> TLAValue {
            guard case .function(var fields) = ref else { return ref }
            fields[.string("count")] = nil
            fields[.string("pcpu")] = nil
            return .function(fields)
        }
        guard let specRef = spec["ref"], let implementationRef = implementation["ref"] else { return false }
        return spec.keys.allSatisfy { $0 == "ref" || spec[$0] == implementation[$0] }
            && rest(specRef) == rest(implementationRef) && references(specRef) == references(implementationRef)
    }

    private func stepOperation(_ interleaving: InterleavingCase) -> String? {
        switch interleaving.step.action {
        case "PutAtomic": "put"
        case "TryAcquireAtomic": "tryget"
        default: nil
        }
    }

    private func callStep(_ interleaving: InterleavingCase) -> SpecStep {
        SpecStep(interleaving.call.operation == "put" ? "PutAtomic" : "TryAcquireAtomic", thread: interleaving.call.thread)
    }

    /// A fresh run taken along `path`, each state checked.
    mutating func replay(_ path: [Edge], trail: inout [SpecStep]) throws -> PercpuModelRun {
        let run = try PercpuModelRun(threads: threads)
        try compare(run, with: graph.initial[0], after: trail)
        for edge in path { _ = try take(edge, on: run, trail: &trail) }
        return run
    }

    /// Takes `interleaving` on a fresh run: the stepped one of its two one
    /// instruction at a time, the other made once `point` comes (after the
    /// stepped one if it never does, or is nil). Both are settled in the run,
    /// which the caller finishes.
    private mutating func race(_ interleaving: InterleavingCase, at point: InterleavingPoint?, trail: inout [SpecStep]) throws
        -> (run: PercpuModelRun, seen: SteppedRun)
    {
        let run = try replay(interleaving.path, trail: &trail)
        let step = try run.singleAction(interleaving.step, operation: stepOperation(interleaving))
        let call = try run.singleAction(callStep(interleaving), operation: interleaving.call.operation)
        let worker = run.worker(interleaving.call.thread)
        let callIsStepped = interleaving.callIsStepped
        let (stepped, other) = callIsStepped ? (call.body, step.body) : (step.body, call.body)
        let seen = SteppedRun(observer: ChangeObserver(run.ref, counters: callIsStepped ? run.counters(in: run.area(of: interleaving.call.thread)) : nil))
        let ready = Latch(), go = Latch(), done = Latch()
        // Neither thread's read sections take ManualRCU's lock: the other
        // must not wait for a lock the stepped one holds.
        defer {
            ParkingRCU.untrackedOther.store(0, ordering: .relaxed)
            ParkingRCU.untrackedStepped.store(0, ordering: .relaxed)
        }
        let otherThread = JoinableThread {
            let makeTheOther = {
                ParkingRCU.untrackedOther.store(PercpuModelRCU.currentThread, ordering: .relaxed)
                ready.open()
                spinWait { go.isOpen }
                seen.otherResult = other()
                done.open()
            }
            if callIsStepped { makeTheOther() } else { try? worker.perform(makeTheOther) }
        }
        ready.wait()
        let stepping = {
            ParkingRCU.untrackedStepped.store(PercpuModelRCU.currentThread, ordering: .relaxed)
            seen.interleavedAfter = stepInstructions(of: { seen.steppedResult = stepped() }, interleavingWhen: { steps in
                seen.instructions = steps
                if seen.observer.changed() { seen.changes.append(steps) }
                guard let point else { return false }
                let start = point.change.map { seen.changes.indices.contains($0) ? seen.changes[$0] : nil } ?? 0
                return start.map { steps - $0 == point.offset } ?? false
            }) {
                go.open()
                spinWait { done.isOpen }
            }
        }
        if callIsStepped { try worker.perform(stepping) } else { stepping() }
        go.open()
        otherThread.join()
        guard done.isOpen else { throw ConformanceFailure("\(interleaving): the other thread did not finish") }
        step.settle(callIsStepped ? seen.otherResult : seen.steppedResult)
        call.settle(callIsStepped ? seen.steppedResult : seen.otherResult)
        return (run, seen)
    }

    /// One interleaving: the other made at `point` of the stepped one.
    /// Returns a description of the failure, if any.
    private mutating func interleave(_ interleaving: InterleavingCase, at point: InterleavingPoint) throws -> String? {
        var trail: [SpecStep] = []
        let (run, seen) = try race(interleaving, at: point, trail: &trail)
        let callResult = interleaving.callIsStepped ? seen.steppedResult : seen.otherResult
        let implementation = try run.abstractState()
        let other = interleaving.call
        let expected: Set<Int>
        if callResult {
            expected = orders(
                from: interleaving.node, stepped: interleaving.step, other: other.thread,
                delta: other.operation == "put" ? -1 : 1)
        } else {
            // A failed call changes nothing; the spec must let it fail
            // before or after the stepped step.
            let failsFirst = outcomes(of: other.operation, by: other.thread, from: interleaving.node) == [interleaving.node]
            let failsAfter = outcomes(of: other.operation, by: other.thread, from: interleaving.stepEdge.to)
                == [interleaving.stepEdge.to]
            expected = failsFirst || failsAfter ? [interleaving.stepEdge.to] : []
        }
        try run.finish()
        if expected.contains(where: { Self.sameReferences(graph.state($0), implementation) }) { return nil }
        let spec = expected.sorted().map { graph.labels[$0] }.joined(separator: "\n or\n")
        let differences = expected.sorted().first.map { node -> String in
            let state = graph.state(node)
            return state.keys.sorted().filter { state[$0] != implementation[$0] }
                .map { "\($0): implementation \(implementation[$0]!.description)" }.joined(separator: "\n")
        } ?? "the spec allows no such result"
        return """
            \(interleaving): the other after instruction \(seen.interleavedAfter.map(String.init) ?? "(none: after the end)") \
            (the stepped one changed the count, mode or its counter at instructions \(seen.changes)); \
            \(interleaving.call.operation) returned \(callResult); path: \
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
    // In the plain pass only: under AddressSanitizer a third of these
    // stepped runs took 153 s rather than 10 (wall clock; the processes
    // mostly waited), far beyond make test's budget.
    @Test("a one-call step of PercpuRef.tla and another thread's call: one stepped by instruction, the other made next to its changes",
          .enabled(if: !addressSanitizerIsActive, "too slow under AddressSanitizer; the plain pass runs it"))
    func everyInstruction() async {
        // Stepping installs a process-wide signal handler: in a process of
        // its own.
        let result = await #expect(processExitsWith: .success, observing: [\.standardOutputContent]) {
            do {
                try PercpuRefInterleavingTests.interleaveAll()
            } catch {
                Issue.record("\(error)")
            }
        }
        if let result { print(String(decoding: result.standardOutputContent, as: UTF8.self), terminator: "") }
    }

    /// Every case of ``PercpuRefExplorer/interleavingCases(stepping:other:)``
    /// on `Spec/MBTPercpuRef.tla`'s graph; records the first failure of each.
    static func interleaveAll() throws {
        let started = Date()
        var explorer = PercpuRefExplorer(graph: try StateGraph.load(config: "MBTPercpuRef", module: "MBTPercpuRef"), threads: ["t1", "t2"], maxHeld: 1)
        let cases = explorer.interleavingCases(stepping: "t1", other: "t2")
        var points = 0
        for interleaving in cases {
            let result = try explorer.interleave(interleaving)
            points += result.points
            print("""
                interleavings: \(interleaving) (\(interleaving.crossesZero ? "crossing zero" : "deciding the call"), \
                path of \(interleaving.path.count)), \(result.points) points
                """)
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
