import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Reports grace periods that take too long, naming the reader threads
/// that hold them up (the kernel's RCU CPU stall warnings, for user space).
///
/// A reader stuck in a read section, or a QSBR thread that stays online
/// without reporting quiescent states, stalls every grace period of its
/// flavor, and every callback behind it, forever. Rather than let that hang
/// silently, the monitor reports, once per stall, with the registered
/// threads liburcu is waiting for:
/// - a ``RCUFlavor/synchronize()-9nl5m`` that has waited ``threshold`` seconds:
///
///   ```text
///   swift-urcu: memb grace period stalled for 10.0 s, waiting for 1 reader: thread 4242 "worker-3"
///   ```
/// - callbacks pending with none run for ``threshold`` seconds: the grace
///   periods of the callback threads, which everything asynchronous waits
///   for (``RCUFlavor/call(_:)``, ``RCUFlavor/retire(_:)``, `RCUPointer`'s
///   updates, polling, `afterGracePeriod`, `await synchronize()`):
///
///   ```text
///   swift-urcu: memb callbacks stalled: 1200 pending, none run for 10.0 s, waiting for 1 reader: thread 4242 "worker-3"
///   ```
///
///   A callback that blocks its callback thread stalls the callbacks
///   behind it the same way; then no reader may be named.
///
/// memb, mb and qsbr readers are named; bp keeps its readers to itself, so
/// a bp stall is reported without names.
public enum RCUStallMonitor {
    /// What a report says.
    public struct Report: Sendable {
        /// The flavor's name ("memb", "qsbr", ...).
        public let flavor: String
        /// How long the grace period had been running, or how long no
        /// callback had run.
        public let seconds: Double
        /// The threads holding it up, as "thread <tid> \"<name>\"".
        public let blockingReaders: [String]
        /// For a callback stall, the callbacks pending; `nil` for a stalled
        /// ``RCUFlavor/synchronize()-9nl5m``.
        public let pendingCallbacks: Int?

        /// The report as one line, the text written to standard error:
        /// `swift-urcu: memb grace period stalled for 10.0 s, waiting for
        /// 1 reader: thread 4242 "worker-3"`.
        public var description: String {
            let readers = blockingReaders.isEmpty
                ? "no registered reader named (bp readers, a blocked callback, or liburcu's own threads)"
                : "waiting for \(blockingReaders.count) reader\(blockingReaders.count == 1 ? "" : "s"): "
                    + blockingReaders.joined(separator: ", ")
            let rounded = (seconds * 10).rounded() / 10
            if let pendingCallbacks {
                return "swift-urcu: \(flavor) callbacks stalled: \(pendingCallbacks) pending, none run for \(rounded) s, \(readers)"
            }
            return "swift-urcu: \(flavor) grace period stalled for \(rounded) s, \(readers)"
        }
    }

    private static let thresholdNanoseconds = Atomic<UInt64>(10_000_000_000)
    private static let handler = Lock<@Sendable (Report) -> Void>({ report in
        writeStandardError(report.description + "\n")
    })

    /// Seconds a grace period may take, or callbacks may wait with none
    /// running, before it is reported (10 by default, as a kernel stall
    /// warning comes after about 21); `nil` turns reports off.
    public static var threshold: Double? {
        get {
            let value = thresholdNanoseconds.load(ordering: .relaxed)
            return value == 0 ? nil : Double(value) / 1e9
        }
        set {
            if let newValue, !(newValue > 0) {
                rcuMisuse("RCUStallMonitor.threshold must be positive (or nil for none), not \(newValue)")
            }
            thresholdNanoseconds.store(newValue.map { UInt64($0 * 1e9) } ?? 0, ordering: .relaxed)
        }
    }

    /// Where reports go; they are printed to standard error by default.
    public static func setHandler(_ newHandler: @escaping @Sendable (Report) -> Void) {
        ForkGuard.excludingFork { handler.withLock { $0 = newHandler } }
    }

    // MARK: Grace periods in flight

    private struct InFlight {
        let flavor: String
        let started: Double
        var reported = false
    }

    private static let inFlight = Lock<(next: Int, waits: [Int: InFlight])>((0, [:]))
    private static let watchdogStarted = Atomic<Bool>(false)

    /// Runs `wait`, a blocking grace-period wait of `flavor`, under watch.
    static func watch(flavor: String, _ wait: () -> Void) {
        guard thresholdNanoseconds.load(ordering: .relaxed) != 0 else { return wait() }
        startWatchdog()
        let token = ForkGuard.excludingFork {
            inFlight.withLock { state -> Int in
                defer { state.next += 1 }
                state.waits[state.next] = InFlight(flavor: flavor, started: monotonicSeconds())
                return state.next
            }
        }
        wait()
        ForkGuard.excludingFork { _ = inFlight.withLock { $0.waits.removeValue(forKey: token) } }
    }

    /// In a forked child: the watchdog thread did not survive the fork;
    /// start a new one if the parent had one.
    static func restartWatchdogInChild() {
        if watchdogStarted.exchange(false, ordering: .relaxed) { startWatchdog() }
    }

    /// Starts the watchdog thread, once. Without a thread (none can be
    /// created) stalls go unreported, which is said once.
    static func startWatchdog() {
        guard !watchdogStarted.load(ordering: .relaxed),
              !watchdogStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let status = startDetachedThread { RCUStallMonitor.watchdog() }
        if status != 0 {
            writeStandardError("swift-urcu: cannot start the stall watchdog thread (error \(status)); stalls will not be reported\n")
        }
    }

    /// Progress of one flavor's callbacks, as the watchdog last saw it.
    private struct CallbackProgress {
        var ran = 0
        var since = 0.0
        var reported = false
    }

    /// Wakes a few times per threshold, and reports each grace period that
    /// has run past it, and each flavor whose callbacks have made no
    /// progress for that long, once per stall.
    private static func watchdog() -> Never {
        var progress = [CallbackProgress](repeating: CallbackProgress(), count: liburcuFlavors.count)
        while true {
            let threshold = thresholdNanoseconds.load(ordering: .relaxed)
            let period = threshold == 0 ? 1_000_000 : min(max(threshold / 4_000, 10_000), 1_000_000)
            usleep(UInt32(period))
            let current = monotonicSeconds()
            var reports: [Report] = []
            for (index, flavor) in liburcuFlavors.enumerated() {
                let ran = flavor.callbacksRun
                let pending = flavor.pendingCallbacks
                if pending == 0 || ran != progress[index].ran {
                    progress[index] = CallbackProgress(ran: ran, since: current)
                } else if threshold != 0 && !progress[index].reported
                    && current - progress[index].since >= Double(threshold) / 1e9 {
                    progress[index].reported = true
                    reports.append(Report(
                        flavor: flavor.name, seconds: current - progress[index].since,
                        blockingReaders: ReaderRegistry.blockingReaders(of: flavor.name),
                        pendingCallbacks: pending))
                }
            }
            guard threshold != 0 else { continue }
            let due = ForkGuard.excludingFork {
                inFlight.withLock { state -> [InFlight] in
                    var due: [InFlight] = []
                    for (token, wait) in state.waits
                    where !wait.reported && current - wait.started >= Double(threshold) / 1e9 {
                        state.waits[token]?.reported = true
                        due.append(wait)
                    }
                    return due
                }
            }
            for wait in due {
                reports.append(Report(
                    flavor: wait.flavor, seconds: current - wait.started,
                    blockingReaders: ReaderRegistry.blockingReaders(of: wait.flavor), pendingCallbacks: nil))
            }
            guard !reports.isEmpty else { continue }
            let report = ForkGuard.excludingFork { handler.withLock { $0 } }
            reports.forEach(report)
        }
    }

}

/// The reader threads swift-urcu registered, with where their reader
/// counter lives, so a stall report can name the ones liburcu waits for.
/// Entries are removed before a thread's storage goes away (at unregister
/// or in the thread-exit destructor), under the same lock the scan holds.
/// Every use of the lock is a ``ForkGuard`` step: registration steps
/// already are, and the scans take one.
package enum ReaderRegistry {
    typealias BlockingTest = @convention(c) (UnsafeMutablePointer<UInt>?) -> Bool

    private struct Entry {
        let flavor: String
        let thread: pthread_t
        let tid: Int32
        // The address of a thread-local variable of a live thread: only
        // read under the lock, and removed before the thread ends.
        nonisolated(unsafe) let counter: UnsafeMutablePointer<UInt>
        let blocks: BlockingTest
    }

    /// A registered reader as a forked child checks it.
    struct Snapshot {
        let flavor: String
        let thread: String
        nonisolated(unsafe) let counter: UnsafeMutablePointer<UInt>
    }

    private static let entries = Lock<(list: [Entry], hook: (@Sendable (_ adding: Bool) -> Void)?)>(([], nil))

    /// Records the calling thread as a reader of `flavor`. Called inside a
    /// registration step.
    static func addCallingThread(flavor: String, counter: UnsafeMutablePointer<UInt>, blocks: BlockingTest) {
        let entry = Entry(
            flavor: flavor, thread: pthread_self(), tid: gettid(),
            counter: counter, blocks: blocks)
        // The hook runs after liburcu's registration, before this one:
        // halfway through the step, holding no lock.
        runRegistrationHook(adding: true)
        entries.withLock { $0.list.append(entry) }
    }

    /// Called inside a registration step.
    static func removeCallingThread(flavor: String) {
        let me = pthread_self()
        entries.withLock { $0.list.removeAll { $0.flavor == flavor && pthread_equal($0.thread, me) != 0 } }
        // Before liburcu's unregistration: halfway through the step.
        runRegistrationHook(adding: false)
    }

    private static func runRegistrationHook(adding: Bool) {
        entries.withLock { $0.hook }?(adding)
    }

    /// For the fork tests: `hook` runs halfway through every registration
    /// and unregistration step (`adding` says which), between liburcu's
    /// part and this registry's, so a test can park a thread inside the
    /// step while another forks.
    package static func setRegistrationHook(_ hook: (@Sendable (_ adding: Bool) -> Void)?) {
        ForkGuard.excludingFork { entries.withLock { $0.hook = hook } }
    }

    /// The registered readers of `flavor` holding up its grace period.
    static func blockingReaders(of flavor: String) -> [String] {
        ForkGuard.excludingFork {
            entries.withLock { state in
                state.list.filter { $0.flavor == flavor && $0.blocks($0.counter) }.map(describe)
            }
        }
    }

    private static func describe(_ entry: Entry) -> String {
        var name = [CChar](repeating: 0, count: 32)
        let named = pthread_getname_np(entry.thread, &name, name.count) == 0
        let text = named ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        return "thread \(entry.tid) \"\(text)\""
    }

    /// In a forked child, before any new thread: forgets the readers other
    /// than the calling thread, here and in liburcu's registries. They do
    /// not exist in the child, and glibc hands their stacks, thread-local
    /// reader records included, to the child's next threads: a record still
    /// linked in liburcu's registry would be zeroed and relinked by the new
    /// thread's registration, corrupting the list that every grace period
    /// walks (measured: 16 children in 1,000 hung in `synchronize_rcu`
    /// while another thread kept registering). bp prunes its own registry
    /// (`urcu_bp_after_fork_child`).
    static func forgetOtherThreadsInChild(_ others: [Snapshot]) {
        for reader in others {
            if reader.flavor == "qsbr" {
                curcu_qsbr_forget_reader(reader.counter)
            } else {
                curcu_common_forget_reader(reader.counter)
            }
        }
        let me = pthread_self()
        entries.withLock { $0.list.removeAll { pthread_equal($0.thread, me) == 0 } }
    }

    /// The registered readers other than the calling thread, described
    /// now, with their counters, for a check in a forked child. Called by
    /// the fork, which holds the guard alone.
    static func otherReaders() -> [Snapshot] {
        let me = pthread_self()
        return entries.withLock { state in
            state.list.filter { pthread_equal($0.thread, me) == 0 }.map {
                Snapshot(flavor: $0.flavor, thread: describe($0), counter: $0.counter)
            }
        }
    }
}

/// Seconds on the monotonic clock: the one clock of the package (stall
/// reports, tests, torture and benchmark).
package func monotonicSeconds() -> Double {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
}

/// Writes `text` to standard error with write(2): no FILE lock, so it is
/// safe at exit and from a watchdog thread.
package func writeStandardError(_ text: String) {
    _ = text.withCString { write(2, $0, strlen($0)) }
}
