@testable import ContextTable
import Foundation
import Synchronization
import Testing
import URCU
import URCUTesting

/// A step of `Spec/Lifecycle.tla` in the spec's own names: contexts `c1`,
/// `c2`…, threads `t1`…, slots `s1`…. Fields the step does not determine
/// are nil: an edge of the state graph may stand for several actions (two
/// threads holding the context can each submit, with the same result).
struct SpecStep: Equatable, CustomStringConvertible {
    var action: String
    var context: String?
    var thread: String?
    var slot: String?
    var detail: String?

    init(_ action: String, context: String? = nil, thread: String? = nil, slot: String? = nil, detail: String? = nil) {
        self.action = action
        self.context = context
        self.thread = thread
        self.slot = slot
        self.detail = detail
    }

    var description: String {
        let parameters = [thread, slot, context, detail].compactMap { $0 }
        return parameters.isEmpty ? action : "\(action)(\(parameters.joined(separator: ", ")))"
    }

    /// Whether `observed`, a step the implementation took, is this one.
    func admits(_ observed: SpecStep) -> Bool {
        func same(_ mine: String?, _ theirs: String?) -> Bool { mine == nil || mine == theirs }
        let sameAction = action == observed.action
            || action == "CreateFails" && ["CreateFailsNoMemory", "CreateFailsBudget"].contains(observed.action)
        return sameAction && same(context, observed.context) && same(thread, observed.thread)
            && same(slot, observed.slot) && same(detail, observed.detail)
    }

    static func context(_ tag: Int) -> String { "c\(tag)" }
    static func slot(_ index: Int) -> String { "s\(index + 1)" }
}

extension LifecycleEvent {
    /// This event as the spec's action, taken by `thread`.
    func specStep(thread: String?) -> SpecStep {
        let c = SpecStep.context
        switch self {
        case .createReserve(let tag, let atomic):
            return SpecStep("CreateReserve", context: c(tag), detail: atomic ? "atomic" : "percpu")
        case .createFailsEarly(let tag): return SpecStep("CreateFailsNoMemory", context: c(tag))
        case .createFailsBudget(let tag): return SpecStep("CreateFailsBudget", context: c(tag))
        case .createPublish(let tag, let slot):
            return SpecStep("CreatePublish", context: c(tag), slot: SpecStep.slot(slot))
        case .createFailsTableInsert(let tag): return SpecStep("CreateFailsTableInsert", context: c(tag))
        case .lookupReadLock: return SpecStep("LookupReadLock", thread: thread)
        case .lookupLoad(let tag, let slot, _):
            return SpecStep("LookupLoad", context: c(tag), thread: thread, slot: SpecStep.slot(slot))
        case .lookupMiss(let slot, let found, _):
            return SpecStep("LookupMiss", context: found == 0 ? "NoContext" : c(found), thread: thread, slot: SpecStep.slot(slot))
        case .lookupTryGetLive(let tag, let succeeded):
            return SpecStep(succeeded ? "LookupTrygetLiveOk" : "LookupTrygetLiveFails", context: c(tag), thread: thread)
        case .lookupReadUnlock: return SpecStep("LookupReadUnlock", thread: thread)
        case .lookupPut(let tag): return SpecStep("LookupPut", context: c(tag), thread: thread)
        case .submit(let tag): return SpecStep("Submit", context: c(tag), thread: thread)
        case .submitRingFull(let tag): return SpecStep("SubmitRingFull", context: c(tag), thread: thread)
        case .reap(let tag, let events): return SpecStep("Reap", context: c(tag), thread: thread, detail: String(events))
        case .destroy(let tag): return SpecStep("Destroy", context: c(tag), thread: thread)
        case .destroyReturnsBudget(let tag): return SpecStep("DestroyReturnsBudget", context: c(tag), thread: thread)
        case .destroyKillsUsers(let tag): return SpecStep("DestroyKillsUsers", context: c(tag), thread: thread)
        case .destroyLost(let tag): return SpecStep("DestroyLost", context: c(tag), thread: thread)
        case .complete(let tag): return SpecStep("Complete", context: c(tag))
        case .switchConfirmed(let tag, let reference):
            return SpecStep("RefSwitchConfirm", context: c(tag), detail: reference.rawValue)
        case .usersReleased(let tag): return SpecStep("UsersRelease", context: c(tag))
        case .reqsReleased(let tag): return SpecStep("ReqsRelease", context: c(tag))
        case .freeCallback(let tag): return SpecStep("FreeRcuCallback", context: c(tag))
        case .freed(let tag): return SpecStep("FreeWork", context: c(tag))
        case .tableGrown(let capacity): return SpecStep("TableGrown", detail: String(capacity))
        case .tableFreed(let capacity): return SpecStep("TableFreed", detail: String(capacity))
        case .quiescentState: return SpecStep("QuiescentState", thread: thread)
        case .callerReadSection(let entered): return SpecStep(entered ? "ReadSectionEnter" : "ReadSectionExit", thread: thread)
        }
    }

    /// The record `Spec/TraceLifecycle.tla` reads: contexts are numbers
    /// (0 for none), slots numbers from 0, threads strings; `extra` fields
    /// (the tickets) go at the end.
    func tlaRecord(thread: String?, extra: [(String, Int)] = []) -> String {
        var fields: [(String, String)] = []
        func context(_ tag: Int) { fields.append(("c", String(tag))) }
        let action: String
        switch self {
        case .createReserve(let tag, let atomic):
            action = "CreateReserve"; context(tag); fields.append(("mode", atomic ? "\"atomic\"" : "\"percpu\""))
        case .createFailsEarly(let tag): action = "CreateFailsNoMemory"; context(tag)
        case .createFailsBudget(let tag): action = "CreateFailsBudget"; context(tag)
        case .createPublish(let tag, let slot): action = "CreatePublish"; context(tag); fields.append(("s", String(slot)))
        case .createFailsTableInsert(let tag): action = "CreateFailsTableInsert"; context(tag)
        case .lookupReadLock: action = "LookupReadLock"
        case .lookupLoad(let tag, let slot, _): action = "LookupLoad"; context(tag); fields.append(("s", String(slot)))
        case .lookupMiss(let slot, let found, _): action = "LookupMiss"; context(found); fields.append(("s", String(slot)))
        case .lookupTryGetLive(let tag, let succeeded):
            action = succeeded ? "LookupTrygetLiveOk" : "LookupTrygetLiveFails"; context(tag)
        case .lookupReadUnlock: action = "LookupReadUnlock"
        case .lookupPut(let tag): action = "LookupPut"; context(tag)
        case .submit(let tag): action = "Submit"; context(tag)
        case .submitRingFull(let tag): action = "SubmitRingFull"; context(tag)
        case .reap(let tag, let events): action = "Reap"; context(tag); fields.append(("n", String(events)))
        case .destroy(let tag): action = "DestroyClaims"; context(tag)
        case .destroyReturnsBudget(let tag): action = "DestroyReturnsBudget"; context(tag)
        case .destroyKillsUsers(let tag): action = "DestroyKillsUsers"; context(tag)
        case .destroyLost(let tag): action = "DestroyLost"; context(tag)
        case .complete(let tag): action = "Complete"; context(tag)
        case .switchConfirmed(let tag, let reference):
            action = "RefSwitchConfirm"; context(tag); fields.append(("ref", "\"\(reference.rawValue)\""))
        case .usersReleased(let tag): action = "UsersRelease"; context(tag)
        case .reqsReleased(let tag): action = "ReqsRelease"; context(tag)
        case .freeCallback(let tag): action = "FreeRcuCallback"; context(tag)
        case .freed(let tag): action = "FreeWork"; context(tag)
        case .tableGrown(let capacity): action = "TableGrown"; fields.append(("k", String(capacity)))
        case .tableFreed(let capacity): action = "TableFreed"; fields.append(("k", String(capacity)))
        case .quiescentState: action = "QuiescentState"
        case .callerReadSection(let entered): action = entered ? "ReadSectionEnter" : "ReadSectionExit"
        }
        return Self.tlaRecord(action, fields, thread: thread, extra: extra)
    }

    private static func tlaRecord(
        _ action: String, _ fields: [(String, String)], thread: String?, extra: [(String, Int)]
    ) -> String {
        var fields = fields
        if let thread { fields.append(("t", "\"\(thread)\"")) }
        fields += extra.map { ($0.0, String($0.1)) }
        return "[a |-> \"\(action)\"" + fields.map { ", \($0.0) |-> \($0.1)" }.joined() + "]"
    }

    /// The records `Spec/TraceTableGrowth.tla` reads for this event, in
    /// ``tlaRecord(thread:extra:)``'s form (tables named by their
    /// capacity, `k`): none for a step that leaves `TableGrowth.tla`'s
    /// variables alone (references, requests, the budget, the free's later
    /// steps); two for a lookup's load, the table pointer
    /// (`LookupLoadTable`) then the slot, each with the step's tickets:
    /// both loads took effect inside them, in that order, and other
    /// threads' steps may come between.
    func tableGrowthRecords(thread: String?, extra: [(String, Int)]) -> [String] {
        switch self {
        case .lookupLoad(_, _, let table), .lookupMiss(_, _, let table):
            return [
                Self.tlaRecord("LookupLoadTable", [("k", String(table))], thread: thread, extra: extra),
                tlaRecord(thread: thread, extra: extra),
            ]
        case .createPublish, .createFailsTableInsert, .lookupReadLock, .lookupReadUnlock, .destroy, .destroyLost,
            .freeCallback, .tableGrown, .tableFreed, .quiescentState, .callerReadSection:
            return [tlaRecord(thread: thread, extra: extra)]
        case .createReserve, .createFailsEarly, .createFailsBudget, .lookupTryGetLive, .lookupPut, .submit,
            .submitRingFull, .reap, .destroyReturnsBudget, .destroyKillsUsers, .complete, .switchConfirmed,
            .usersReleased, .reqsReleased, .freed:
            return []
        }
    }
}

extension LifecycleEvent: TraceEvent {}

extension TraceRecorder<LifecycleEvent>.Entry {
    var step: SpecStep { event.specStep(thread: thread) }
    /// For ``TraceRecorder/trace``'s entries, whose steps have all ended.
    var tlaRecord: String { event.tlaRecord(thread: thread, extra: [("b", begin), ("e", end!)]) }
}

/// Records a table's lifecycle without ordering it (``TraceRecorder``
/// explains how), naming each create's context by a tag, and keeping the
/// context objects if asked.
final class LifecycleTraceRecorder: TraceRecorder<LifecycleEvent>, LifecycleRecorder, @unchecked Sendable {
    private let lastTag = Atomic<Int>(0)
    private let chosenTag = Atomic<Int>(0)
    /// Whether to keep the context objects (which keeps them allocated).
    private let keepsContexts: Bool

    /// - Parameters:
    ///   - keepsContexts: keep each context object, for a refinement
    ///     mapping; a table's shutdown then waits for them in vain until
    ///     ``forgetContexts()``.
    init(
        keepsContexts: Bool = false, afterStep: (@Sendable (LifecycleEvent) -> Void)? = nil,
        beforeStep: (@Sendable (LifecycleEvent) -> Void)? = nil
    ) {
        self.keepsContexts = keepsContexts
        super.init(afterStep: afterStep, beforeStep: beforeStep)
    }

    /// Makes the next create use `tag` (else tags count up from 1).
    func chooseNextTag(_ tag: Int) { chosenTag.store(tag, ordering: .relaxed) }

    func nextContextTag() -> Int {
        let chosen = chosenTag.exchange(0, ordering: .relaxed)
        return chosen != 0 ? chosen : lastTag.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func allocated(_ context: AnyObject, tag: Int) {
        if keepsContexts { keep(context, tag: tag) }
    }

    /// The context object the create tagged `tag` allocated, if kept.
    func context(_ tag: Int) -> AnyObject? { kept(tag) }

    /// Lets go of the context objects (so that the table can show they
    /// were all deallocated).
    func forgetContexts() { forgetKept() }

    /// Records that the calling QSBR thread is about to report a
    /// quiescent state (call it just before
    /// `QuiescentStateRCU.quiescentState()`).
    func quiescentState() {
        step { ((), LifecycleEvent.quiescentState) }
    }

    /// Runs `body` inside a read section of `Flavor` of the caller's own,
    /// recorded just inside its start and end.
    func readSection<Flavor: RCUFlavor>(_: Flavor.Type, _ body: () -> Void) {
        Flavor.read { _ in
            step { ((), LifecycleEvent.callerReadSection(entered: true)) }
            body()
            step { ((), LifecycleEvent.callerReadSection(entered: false)) }
        }
    }

    /// The steps that are actions of `Spec/Lifecycle.tla`, recorded so
    /// far, in order, without waiting: the model-based tests read them
    /// while a thread is stopped inside a step (its outer step shows,
    /// with no end ticket yet).
    var recorded: [Entry] { recordedSoFar.filter { $0.event.isLifecycleAction } }
}

/// Stops a lookup inside its read section, right after its load, while the
/// test does something the lookup must hold up; a recorder's `afterStep`.
final class LookupParking: Sendable {
    private let parked = DispatchSemaphore(value: 0), resumed = DispatchSemaphore(value: 0)
    private let parksNext = Atomic<Bool>(false)

    /// A recorder whose next lookup, once ``parkNextLookup()`` is called,
    /// stops after its load until ``resume()``.
    func recorder() -> LifecycleTraceRecorder {
        LifecycleTraceRecorder(keepsContexts: true, afterStep: { event in
            if case .lookupLoad = event, self.parksNext.exchange(false, ordering: .relaxed) {
                self.parked.signal()
                self.resumed.wait()
            }
        })
    }

    func parkNextLookup() { parksNext.store(true, ordering: .relaxed) }
    func waitUntilParked() { parked.wait() }
    func resume() { resumed.signal() }
}
