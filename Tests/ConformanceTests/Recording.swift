@testable import ContextTable
import Foundation
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
        case .lookupLoad(let tag, let slot):
            return SpecStep("LookupLoad", context: c(tag), thread: thread, slot: SpecStep.slot(slot))
        case .lookupTryGetLive(let tag, let succeeded):
            return SpecStep(succeeded ? "LookupTrygetLiveOk" : "LookupTrygetLiveFails", context: c(tag), thread: thread)
        case .lookupPut(let tag): return SpecStep("LookupPut", context: c(tag), thread: thread)
        case .submit(let tag): return SpecStep("Submit", context: c(tag), thread: thread)
        case .destroy(let tag): return SpecStep("Destroy", context: c(tag), thread: thread)
        case .complete(let tag): return SpecStep("Complete", context: c(tag))
        case .switchConfirmed(let tag, let reference):
            return SpecStep("RefSwitchConfirm", context: c(tag), detail: reference.rawValue)
        case .usersReleased(let tag): return SpecStep("UsersRelease", context: c(tag))
        case .reqsReleased(let tag): return SpecStep("ReqsRelease", context: c(tag))
        case .freeCallback(let tag): return SpecStep("FreeRcuCallback", context: c(tag))
        case .freed(let tag): return SpecStep("FreeWork", context: c(tag))
        }
    }

    /// The record `Spec/TraceLifecycle.tla` reads: contexts are numbers,
    /// slots numbers from 0, threads strings.
    func tlaRecord(thread: String?) -> String {
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
        case .lookupLoad(let tag, let slot): action = "LookupLoad"; context(tag); fields.append(("s", String(slot)))
        case .lookupTryGetLive(let tag, let succeeded):
            action = succeeded ? "LookupTrygetLiveOk" : "LookupTrygetLiveFails"; context(tag)
        case .lookupPut(let tag): action = "LookupPut"; context(tag)
        case .submit(let tag): action = "Submit"; context(tag)
        case .destroy(let tag): action = "Destroy"; context(tag)
        case .complete(let tag): action = "Complete"; context(tag)
        case .switchConfirmed(let tag, let reference):
            action = "RefSwitchConfirm"; context(tag); fields.append(("ref", "\"\(reference.rawValue)\""))
        case .usersReleased(let tag): action = "UsersRelease"; context(tag)
        case .reqsReleased(let tag): action = "ReqsRelease"; context(tag)
        case .freeCallback(let tag): action = "FreeRcuCallback"; context(tag)
        case .freed(let tag): action = "FreeWork"; context(tag)
        }
        if let thread { fields.append(("t", "\"\(thread)\"")) }
        return "[a |-> \"\(action)\"" + fields.map { ", \($0.0) |-> \($0.1)" }.joined() + "]"
    }
}

/// Records a table's lifecycle as a linear order of spec steps.
///
/// Each step runs inside one recursive lock, so steps on different threads
/// cannot overlap and the recorded order is the order in which they took
/// effect; a step nested in another (a release run inside a put) is
/// recorded after it, in the slot the outer step reserved first. With a
/// `beforeStep` hook, the lock is let go before a nested step whose
/// enclosing steps were recorded when they began: steps of other threads
/// may then come between the two, as they may without a recorder.
final class LifecycleTraceRecorder: LifecycleRecorder, @unchecked Sendable {
    struct Entry {
        let event: LifecycleEvent
        let thread: String?
        var step: SpecStep { event.specStep(thread: thread) }
        var tlaRecord: String { event.tlaRecord(thread: thread) }
    }

    private let lock = NSRecursiveLock()
    // Guarded by `lock`.
    private var entries: [Entry?] = []
    /// How many steps each thread is inside (nested steps count again).
    private var depths: [UInt: Int] = [:]
    private var threadNames: [UInt: String] = [:]
    private var contexts: [Int: AnyObject] = [:]
    private var lastTag = 0
    private var chosenTag: Int?
    /// Runs on the recording thread after each outermost step, outside the
    /// lock: where the model-based tests stop a worker mid-operation.
    private let afterStep: (@Sendable (LifecycleEvent) -> Void)?
    /// Runs on the recording thread before each step whose event was known
    /// in advance, with the lock let go (the steps enclosing it, if any,
    /// are recorded already): where the model-based tests stop a thread
    /// between a put and the release it runs, or a completion that has
    /// claimed its request before its step, while other threads take
    /// theirs.
    private let beforeStep: (@Sendable (LifecycleEvent) -> Void)?
    /// Whether to keep the context objects (which keeps them allocated).
    private let keepsContexts: Bool

    /// - Parameters:
    ///   - keepsContexts: keep each context object, for the model-based
    ///     tests' refinement mapping; a table's shutdown then waits for
    ///     them in vain until ``forgetContexts()``.
    init(
        keepsContexts: Bool = false, afterStep: (@Sendable (LifecycleEvent) -> Void)? = nil,
        beforeStep: (@Sendable (LifecycleEvent) -> Void)? = nil
    ) {
        self.keepsContexts = keepsContexts
        self.afterStep = afterStep
        self.beforeStep = beforeStep
    }

    private func locked<Result>(_ body: () -> Result) -> Result {
        lock.lock()
        defer { lock.unlock() }
        return body()
    }

    /// Names the calling thread in thread steps (else `t1`, `t2`… in order
    /// of their first thread step).
    func nameCurrentThread(_ name: String) {
        locked { threadNames[ManualRCU<Never>.currentThread] = name }
    }

    /// Makes the next create use `tag` (else tags count up from 1).
    func chooseNextTag(_ tag: Int) { locked { chosenTag = tag } }

    func nextContextTag() -> Int {
        locked {
            defer { chosenTag = nil }
            if let chosenTag { return chosenTag }
            lastTag += 1
            return lastTag
        }
    }

    func allocated(_ context: AnyObject, tag: Int) {
        if keepsContexts { locked { contexts[tag] = context } }
    }

    /// The context object the create tagged `tag` allocated, if any.
    func context(_ tag: Int) -> AnyObject? { locked { contexts[tag] } }

    /// Lets go of the context objects (so that the table can show they
    /// were all deallocated).
    func forgetContexts() { locked { contexts = [:] } }

    func step<Result>(_ body: () -> (Result, LifecycleEvent?)) -> Result {
        record(announced: nil, body)
    }

    /// Records `event` when the step begins, so that a step nested in it
    /// may stop with this one already recorded.
    func step(_ event: LifecycleEvent, performing action: () -> Void) {
        if let beforeStep {
            let thread = ManualRCU<Never>.currentThread
            let held = locked { depths[thread, default: 0] }
            // The enclosing steps, if any, have taken effect (their events
            // are recorded): other threads' steps may come between.
            for _ in 0..<held { lock.unlock() }
            beforeStep(event)
            for _ in 0..<held { lock.lock() }
        }
        record(announced: event) { () -> (Void, LifecycleEvent?) in
            action()
            return ((), event)
        }
    }

    private func record<Result>(announced: LifecycleEvent?, _ body: () -> (Result, LifecycleEvent?)) -> Result {
        lock.lock()
        let thread = ManualRCU<Never>.currentThread
        depths[thread, default: 0] += 1
        let slot = entries.count
        entries.append(announced.map(entry))
        let (result, event) = body()
        if let event { entries[slot] = entry(event) }
        depths[thread]! -= 1
        let outermost = depths[thread] == 0
        if outermost { depths[thread] = nil }
        lock.unlock()
        if outermost, let event, let afterStep { afterStep(event) }
        return result
    }

    private func entry(_ event: LifecycleEvent) -> Entry {
        Entry(event: event, thread: event.isThreadStep ? currentThreadName() : nil)
    }

    private func currentThreadName() -> String {
        let thread = ManualRCU<Never>.currentThread
        if let name = threadNames[thread] { return name }
        let name = "t\(threadNames.count + 1)"
        threadNames[thread] = name
        return name
    }

    /// The steps recorded so far, in order.
    var recorded: [Entry] { locked { entries.compactMap { $0 } } }
}
