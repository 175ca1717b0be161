import Foundation
import Synchronization
import Testing
import URCU
import URCUTesting

/// An event a ``TraceRecorder`` records: a step of a spec's action.
protocol TraceEvent: Sendable {
    /// Whether the spec's action takes the calling thread as a parameter
    /// (the recorder then names the thread in the step's entry).
    var isThreadStep: Bool { get }
}

/// Records a run's steps without ordering them: the machinery of trace
/// validation, shared by the recorders of each spec
/// (``LifecycleTraceRecorder``, ``MemoryRegionTraceRecorder``).
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
class TraceRecorder<Event: TraceEvent>: @unchecked Sendable {
    struct Entry {
        let event: Event
        let thread: String?
        /// The tickets taken before and after the step's code; no `end`
        /// yet for a step still running (``recordedSoFar`` shows those).
        let begin: Int, end: Int?
    }

    /// One thread's part of the recording. Only its thread appends; the
    /// lock, never contended while threads record, hands the entries to
    /// whoever reads them afterwards.
    final class ThreadLog: @unchecked Sendable {
        struct Record {
            let event: Event
            let begin: Int
            var end: Int?
        }
        let state = Lock<(records: [Record], kept: [Int: Kept], name: String?)>(([], [:], nil))
        /// Steps of this thread in progress (a nested step runs inside
        /// another); touched only by the thread.
        var depth = 0
    }

    /// An object a recorder keeps alive for the test (Sendable objects
    /// only: a context, a region).
    struct Kept: @unchecked Sendable { let object: AnyObject }

    private let clock = Atomic<Int>(0)
    /// Steps begun and not yet appended to their log.
    private let inProgress = Atomic<Int>(0)
    /// Every thread's log; a thread adds its own once, at its first step.
    private let logs = Lock<[ThreadLog]>([])
    /// Runs on the recording thread after each outermost step: where the
    /// model-based tests stop a worker mid-operation.
    private let afterStep: (@Sendable (Event) -> Void)?
    /// Runs on the recording thread before each step whose event was known
    /// in advance (the steps enclosing it, if any, are recorded already):
    /// where the model-based tests stop a thread between a put and the
    /// release it runs, or a completion that has claimed its request
    /// before its step, while other threads take theirs.
    private let beforeStep: (@Sendable (Event) -> Void)?

    /// This recorder in the threads' ``ThreadLogs``.
    private let serial = ThreadLogs.registerRecorder()

    init(afterStep: (@Sendable (Event) -> Void)? = nil, beforeStep: (@Sendable (Event) -> Void)? = nil) {
        self.afterStep = afterStep
        self.beforeStep = beforeStep
    }

    deinit {
        ThreadLogs.unregisterRecorder(serial)
        // Threads may hold the logs until their next first step or their
        // exit: let go of what the logs hold now.
        for log in logs.withLock({ $0 }) { log.state.withLock { $0 = ([], [:], nil) } }
    }

    /// The calling thread's log, made on its first use of this recorder.
    private var currentLog: ThreadLog {
        let logs = ThreadLogs.current
        if let log = logs.log(of: serial) as? ThreadLog { return log }
        let log = ThreadLog()
        logs.add(log, of: serial)
        self.logs.withLock { $0.append(log) }
        return log
    }

    /// Names the calling thread in thread steps (else `t1`, `t2`… in order
    /// of their first thread step).
    func nameCurrentThread(_ name: String) {
        currentLog.state.withLock { $0.name = name }
    }

    /// Keeps `object` alive under `tag`, in the calling thread's log (no
    /// lock shared by the threads).
    func keep(_ object: AnyObject, tag: Int) {
        currentLog.state.withLock { $0.kept[tag] = Kept(object: object) }
    }

    /// The object kept under `tag`, if any.
    func kept(_ tag: Int) -> AnyObject? {
        for log in logs.withLock({ $0 }) {
            if let kept = log.state.withLock({ $0.kept[tag] }) { return kept.object }
        }
        return nil
    }

    /// Lets go of the objects kept.
    func forgetKept() {
        for log in logs.withLock({ $0 }) { log.state.withLock { $0.kept = [:] } }
    }

    /// Runs `body`, one step, and records the event it returns (none:
    /// nothing the spec sees happened) with the tickets taken around it.
    func step<Result>(_ body: () -> (Result, Event?)) -> Result {
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
    /// in ``recordedSoFar``.
    func step(_ event: Event, performing action: () -> Void) {
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
    private func finishStep(_ event: Event?, in log: ThreadLog) {
        inProgress.wrappingSubtract(1, ordering: .releasing)
        if let event, log.depth == 0, let afterStep { afterStep(event) }
    }

    /// Every step recorded, sorted by first ticket, with thread names,
    /// once every step has ended: exact once no step can begin any more.
    /// It waits for those in progress (a callback thread's step whose
    /// effect the caller already saw may still be appending its record).
    var trace: [Entry] {
        if !eventually(seconds: 60, { inProgress.load(ordering: .acquiring) == 0 }) {
            Issue.record("a recorded step did not finish within 60 s")
        }
        return recordedSoFar
    }

    /// Every step recorded so far, sorted by first ticket, with thread
    /// names, without waiting: a step still running shows with no end
    /// ticket.
    var recordedSoFar: [Entry] {
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
    /// Logs by their recorder's serial, held strongly. Not weakly: a weak
    /// reference gives the log a side table, which only an encoded pointer
    /// in the log's header reaches, and LeakSanitizer reported such a side
    /// table as leaked (`make test`, 2026-11-30). Not by `ObjectIdentifier`:
    /// a new recorder may reuse a dead one's address.
    private var logs: [(recorder: UInt64, log: AnyObject)] = []

    func log(of recorder: UInt64) -> AnyObject? {
        logs.first { $0.recorder == recorder }?.log
    }

    /// Adds `log`, dropping the logs of recorders gone (once per thread
    /// and recorder, never per step).
    func add(_ log: AnyObject, of recorder: UInt64) {
        let live = Self.liveRecorders.withLock { $0.live }
        logs.removeAll { !live.contains($0.recorder) }
        logs.append((recorder, log))
    }

    private static let liveRecorders = Lock<(next: UInt64, live: Set<UInt64>)>((0, []))

    static func registerRecorder() -> UInt64 {
        liveRecorders.withLock { recorders in
            recorders.next += 1
            recorders.live.insert(recorders.next)
            return recorders.next
        }
    }

    static func unregisterRecorder(_ serial: UInt64) {
        _ = liveRecorders.withLock { $0.live.remove(serial) }
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
    private static let live = Lock<[ObjectIdentifier: ThreadLogs]>([:])

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

/// The two files `Spec/check-traces.sh` checks for one recorded run: a
/// module `name` that extends the trace module `spec` (`TraceLifecycle`,
/// `TraceMemoryRegion`, `TraceTableGrowth`) with the run's `records` as
/// `TraceData` and the run's own `definitions` (`TraceThreads`,
/// `TraceFinal`, …), and its configuration: `Trace` and `Final` bound to
/// them, the run's `constants`, and the check every trace module makes
/// (the trace is accepted exactly when `TraceIncomplete` is violated).
struct TraceCheckFiles {
    let name: String
    let spec: String
    let records: [String]
    let definitions: [String]
    let constants: [String]

    /// `TraceFinal` for a run whose final state is not compared.
    static let noFinalState = "[f \\in {} |-> 0]"

    /// `threads` as a TLA+ set of strings.
    static func set(of threads: [String]) -> String { "{\(threads.map { "\"\($0)\"" }.joined(separator: ", "))}" }

    func write(to directory: URL) throws {
        let module = """
            ---- MODULE \(name) ----
            EXTENDS \(spec)
            TraceData == <<
            \(records.map { "  " + $0 }.joined(separator: ",\n"))
            >>
            \(definitions.joined(separator: "\n"))
            ====

            """
        let config = """
            CONSTANTS
                Trace <- TraceData
                Final <- TraceFinal
            \(constants.map { "    " + $0 }.joined(separator: "\n"))
            INIT TraceInit
            NEXT TraceNext
            INVARIANT TraceIncomplete

            """
        try module.write(to: directory.appendingPathComponent("\(name).tla"), atomically: true, encoding: .utf8)
        try config.write(to: directory.appendingPathComponent("\(name).cfg"), atomically: true, encoding: .utf8)
    }
}
