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

/// Records a table's lifecycle without ordering it.
///
/// No lock is held across a step or taken by every step: each thread
/// appends to a log of its own, and each step takes two tickets from one
/// atomic counter, before and after its code. The step took effect
/// somewhere in between; `Spec/TraceLifecycle.tla` explains why that is
/// enough to check the run, and why a single ticket would not be. A step
/// nested in another (a release run inside a put) gets an interval inside
/// the outer one, so sorted by their first ticket it comes after it.
///
/// The same recorder serves the model-based tests, which drive one step at
/// a time and stop threads between steps (`afterStep`, `beforeStep`), and
/// trace validation, which lets threads run.
final class LifecycleTraceRecorder: LifecycleRecorder, @unchecked Sendable {
    struct Entry {
        let event: LifecycleEvent
        let thread: String?
        /// The tickets taken before and after the step's code; no `end`
        /// yet for a step still running (``recorded`` shows those).
        let begin: Int, end: Int?
        var step: SpecStep { event.specStep(thread: thread) }
        /// For ``trace``'s entries, whose steps have all ended.
        var tlaRecord: String { event.tlaRecord(thread: thread, extra: [("b", begin), ("e", end!)]) }
    }

    /// One thread's part of the recording. Only its thread appends; the
    /// lock, never contended while threads record, hands the entries to
    /// whoever reads them afterwards.
    final class ThreadLog: @unchecked Sendable {
        struct Record {
            let event: LifecycleEvent
            let begin: Int
            var end: Int?
        }
        /// A context object (a `Context`, which is Sendable; the recorder
        /// sees it as AnyObject).
        struct Kept: @unchecked Sendable { let object: AnyObject }
        let recorder: ObjectIdentifier
        let state = Mutex<(records: [Record], contexts: [Int: Kept], name: String?)>(([], [:], nil))
        /// Steps of this thread in progress (a nested step runs inside
        /// another); touched only by the thread.
        var depth = 0

        init(recorder: ObjectIdentifier) { self.recorder = recorder }
    }

    private let clock = Atomic<Int>(0)
    /// Steps begun and not yet appended to their log.
    private let inProgress = Atomic<Int>(0)
    private let lastTag = Atomic<Int>(0)
    private let chosenTag = Atomic<Int>(0)
    /// Every thread's log; a thread adds its own once, at its first step.
    private let logs = Mutex<[ThreadLog]>([])
    /// Runs on the recording thread after each outermost step: where the
    /// model-based tests stop a worker mid-operation.
    private let afterStep: (@Sendable (LifecycleEvent) -> Void)?
    /// Runs on the recording thread before each step whose event was known
    /// in advance (the steps enclosing it, if any, are recorded already):
    /// where the model-based tests stop a thread between a put and the
    /// release it runs, or a completion that has claimed its request
    /// before its step, while other threads take theirs.
    private let beforeStep: (@Sendable (LifecycleEvent) -> Void)?
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
        self.afterStep = afterStep
        self.beforeStep = beforeStep
    }

    /// The calling thread's log, made on its first use of this recorder.
    private var currentLog: ThreadLog {
        let logs = ThreadLogs.current
        if let log = logs.log(of: self) { return log }
        let log = ThreadLog(recorder: ObjectIdentifier(self))
        logs.add(log)
        self.logs.withLock { $0.append(log) }
        return log
    }

    /// Names the calling thread in thread steps (else `t1`, `t2`… in order
    /// of their first thread step).
    func nameCurrentThread(_ name: String) {
        currentLog.state.withLock { $0.name = name }
    }

    /// Makes the next create use `tag` (else tags count up from 1).
    func chooseNextTag(_ tag: Int) { chosenTag.store(tag, ordering: .relaxed) }

    func nextContextTag() -> Int {
        let chosen = chosenTag.exchange(0, ordering: .relaxed)
        return chosen != 0 ? chosen : lastTag.wrappingAdd(1, ordering: .relaxed).newValue
    }

    func allocated(_ context: AnyObject, tag: Int) {
        if keepsContexts { currentLog.state.withLock { $0.contexts[tag] = ThreadLog.Kept(object: context) } }
    }

    /// The context object the create tagged `tag` allocated, if kept.
    func context(_ tag: Int) -> AnyObject? {
        for log in logs.withLock({ $0 }) {
            if let kept = log.state.withLock({ $0.contexts[tag] }) { return kept.object }
        }
        return nil
    }

    /// Lets go of the context objects (so that the table can show they
    /// were all deallocated).
    func forgetContexts() {
        for log in logs.withLock({ $0 }) { log.state.withLock { $0.contexts = [:] } }
    }

    func step<Result>(_ body: () -> (Result, LifecycleEvent?)) -> Result {
        let log = currentLog
        let begin = beginStep(in: log)
        let (result, event) = body()
        let end = endStep(in: log)
        if let event {
            log.state.withLock { $0.records.append(ThreadLog.Record(event: event, begin: begin, end: end)) }
        }
        finishStep(event, in: log)
        return result
    }

    /// Records `event` as the step begins (its end ticket once it ends),
    /// so that a step nested in it may stop in `beforeStep` with this one
    /// in ``recorded``.
    func step(_ event: LifecycleEvent, performing action: () -> Void) {
        beforeStep?(event)
        let log = currentLog
        let begin = beginStep(in: log)
        let index = log.state.withLock { state in
            state.records.append(ThreadLog.Record(event: event, begin: begin, end: nil))
            return state.records.count - 1
        }
        action()
        let end = endStep(in: log)
        log.state.withLock { $0.records[index].end = end }
        finishStep(event, in: log)
    }

    /// Takes a step's first ticket.
    private func beginStep(in log: ThreadLog) -> Int {
        inProgress.wrappingAdd(1, ordering: .relaxed)
        log.depth += 1
        // Sequentially consistent: a ticket fetched after this step's end
        // is larger exactly when its fetch comes after this one.
        return clock.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue
    }

    /// Takes a step's last ticket.
    private func endStep(in log: ThreadLog) -> Int {
        log.depth -= 1
        return clock.wrappingAdd(1, ordering: .sequentiallyConsistent).oldValue
    }

    /// Ends a step whose record, if any, is complete.
    private func finishStep(_ event: LifecycleEvent?, in log: ThreadLog) {
        inProgress.wrappingSubtract(1, ordering: .releasing)
        if let event, log.depth == 0, let afterStep { afterStep(event) }
    }

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

    /// Every step recorded, sorted by first ticket, with thread names,
    /// once every step has ended: exact once no step can begin any more.
    /// It waits for those in progress (a callback thread's step whose
    /// effect the caller already saw may still be appending its record).
    var trace: [Entry] {
        if !eventually(seconds: 60, { inProgress.load(ordering: .acquiring) == 0 }) {
            Issue.record("a recorded step did not finish within 60 s")
        }
        return entries
    }

    /// The steps that are actions of `Spec/Lifecycle.tla`, recorded so
    /// far, in order, without waiting: the model-based tests read them
    /// while a thread is stopped inside a step (its outer step shows,
    /// with no end ticket yet).
    var recorded: [Entry] { entries.filter { $0.event.isLifecycleAction } }

    /// Every step recorded so far, sorted by first ticket, with thread
    /// names.
    private var entries: [Entry] {
        let parts = logs.withLock { $0 }.map { log in log.state.withLock { ($0.records, $0.name) } }
        var unnamed = parts.indices.filter { parts[$0].1 == nil && parts[$0].0.contains { $0.event.isThreadStep } }
        unnamed.sort { parts[$0].0.first { $0.event.isThreadStep }!.begin < parts[$1].0.first { $0.event.isThreadStep }!.begin }
        var names = parts.map(\.1)
        let taken = Set(names.compactMap { $0 })
        var number = 0
        for index in unnamed {
            repeat { number += 1 } while taken.contains("t\(number)")
            names[index] = "t\(number)"
        }
        return parts.indices.flatMap { index in
            parts[index].0.map { record in
                Entry(
                    event: record.event, thread: record.event.isThreadStep ? names[index] : nil,
                    begin: record.begin, end: record.end)
            }
        }.sorted { $0.begin < $1.begin }
    }
}

/// The logs the calling thread keeps for the recorders it has recorded
/// into, found through a thread-specific value: no lock on any step.
/// Unchecked: only its own thread touches its contents; the registry of
/// live logs only holds it.
final class ThreadLogs: @unchecked Sendable {
    private struct Weak { weak var log: LifecycleTraceRecorder.ThreadLog? }
    private var logs: [Weak] = []

    func log(of recorder: LifecycleTraceRecorder) -> LifecycleTraceRecorder.ThreadLog? {
        let id = ObjectIdentifier(recorder)
        return logs.lazy.compactMap(\.log).first { $0.recorder == id }
    }

    /// A recorder keeps its logs; those of recorders gone are dropped here.
    func add(_ log: LifecycleTraceRecorder.ThreadLog) {
        logs.removeAll { $0.log == nil }
        logs.append(Weak(log: log))
    }

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { value in
            let logs = Unmanaged<ThreadLogs>.fromOpaque(value!)
            ThreadLogs.live.withLock { $0[ObjectIdentifier(logs.takeUnretainedValue())] = nil }
            logs.release()
        }
        precondition(status == 0, "pthread_key_create failed: \(status)")
        return key
    }()

    /// The logs of threads still alive, also held here: LeakSanitizer does
    /// not look for roots in thread-specific values, so the logs of threads
    /// alive at exit (pool threads, parked workers) would be reported as
    /// leaked. Touched once per thread, never per step.
    private static let live = Mutex<[ObjectIdentifier: ThreadLogs]>([:])

    /// The calling thread's logs, made on first use and released at its
    /// exit.
    static var current: ThreadLogs {
        if let value = pthread_getspecific(key) { return Unmanaged<ThreadLogs>.fromOpaque(value).takeUnretainedValue() }
        let logs = ThreadLogs()
        live.withLock { $0[ObjectIdentifier(logs)] = logs }
        pthread_setspecific(key, Unmanaged.passRetained(logs).toOpaque())
        return logs
    }
}
