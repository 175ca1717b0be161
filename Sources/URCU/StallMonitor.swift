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
/// without reporting quiescent states, stalls every ``RCUFlavor/synchronize()``
/// (and every callback behind it) forever. Rather than hang silently, a
/// `synchronize()` that has waited ``threshold`` seconds is reported once,
/// with the registered threads liburcu is waiting for:
///
/// ```text
/// swift-urcu: memb grace period stalled for 10.0 s, waiting for 1 reader: thread 4242 "worker-3"
/// ```
///
/// memb, mb and qsbr readers are named; bp keeps its readers to itself, so
/// a bp stall is reported without names.
public enum RCUStallMonitor {
    /// What a report says.
    public struct Report: Sendable {
        /// The flavor's name ("memb", "qsbr", ...).
        public let flavor: String
        /// How long the grace period had been running.
        public let seconds: Double
        /// The threads holding it up, as "thread <tid> \"<name>\"".
        public let blockingReaders: [String]

        public var description: String {
            let readers = blockingReaders.isEmpty
                ? "no registered reader named (bp readers, or liburcu's own threads)"
                : "waiting for \(blockingReaders.count) reader\(blockingReaders.count == 1 ? "" : "s"): "
                    + blockingReaders.joined(separator: ", ")
            let rounded = (seconds * 10).rounded() / 10
            return "swift-urcu: \(flavor) grace period stalled for \(rounded) s, \(readers)"
        }
    }

    private static let thresholdNanoseconds = Atomic<UInt64>(10_000_000_000)
    private static let handler = Mutex<@Sendable (Report) -> Void>({ report in
        writeStandardError(report.description + "\n")
    })

    /// Seconds a grace period may take before it is reported (10 by
    /// default, as a kernel stall warning comes after about 21); `nil`
    /// turns reports off.
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
        handler.withLock { $0 = newHandler }
    }

    // MARK: Grace periods in flight

    private struct InFlight {
        let flavor: String
        let started: Double
        var reported = false
    }

    private static let inFlight = Mutex<(next: Int, waits: [Int: InFlight])>((0, [:]))
    private static let watchdogStarted = Atomic<Bool>(false)

    /// Runs `wait`, a blocking grace-period wait of `flavor`, under watch.
    static func watch(flavor: String, _ wait: () -> Void) {
        guard thresholdNanoseconds.load(ordering: .relaxed) != 0 else { return wait() }
        startWatchdog()
        let token = inFlight.withLock { state -> Int in
            defer { state.next += 1 }
            state.waits[state.next] = InFlight(flavor: flavor, started: monotonicSeconds())
            return state.next
        }
        wait()
        _ = inFlight.withLock { $0.waits.removeValue(forKey: token) }
    }

    /// In a forked child: the watchdog thread did not survive the fork.
    static func forgetWatchdog() { watchdogStarted.store(false, ordering: .relaxed) }

    private static func startWatchdog() {
        guard !watchdogStarted.load(ordering: .relaxed),
              !watchdogStarted.exchange(true, ordering: .acquiringAndReleasing) else { return }
        let status = startDetachedThread { RCUStallMonitor.watchdog() }
        precondition(status == 0, "swift-urcu: cannot start the stall watchdog (\(status))")
    }

    /// Wakes a few times per threshold, and reports each grace period that
    /// has run past it, once.
    private static func watchdog() -> Never {
        while true {
            let threshold = thresholdNanoseconds.load(ordering: .relaxed)
            let period = threshold == 0 ? 1_000_000 : min(max(threshold / 4_000, 10_000), 1_000_000)
            usleep(UInt32(period))
            guard threshold != 0 else { continue }
            let current = monotonicSeconds()
            let due = inFlight.withLock { state -> [InFlight] in
                var due: [InFlight] = []
                for (token, wait) in state.waits
                where !wait.reported && current - wait.started >= Double(threshold) / 1e9 {
                    state.waits[token]?.reported = true
                    due.append(wait)
                }
                return due
            }
            for wait in due {
                let report = Report(
                    flavor: wait.flavor, seconds: current - wait.started,
                    blockingReaders: ReaderRegistry.blockingReaders(of: wait.flavor))
                handler.withLock { $0 }(report)
            }
        }
    }

}

/// The reader threads swift-urcu registered, with where their reader
/// counter lives, so a stall report can name the ones liburcu waits for.
/// Entries are removed before a thread's storage goes away (at unregister
/// or in the thread-exit destructor), under the same lock the scan holds.
enum ReaderRegistry {
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

    private static let entries = Mutex<[Entry]>([])

    /// Records the calling thread as a reader of `flavor`.
    static func addCallingThread(flavor: String, counter: UnsafeMutablePointer<UInt>, blocks: BlockingTest) {
        let entry = Entry(
            flavor: flavor, thread: pthread_self(), tid: gettid(),
            counter: counter, blocks: blocks)
        entries.withLock { $0.append(entry) }
    }

    static func removeCallingThread(flavor: String) {
        let me = pthread_self()
        entries.withLock { $0.removeAll { $0.flavor == flavor && pthread_equal($0.thread, me) != 0 } }
    }

    /// The registered readers of `flavor` holding up its grace period.
    static func blockingReaders(of flavor: String) -> [String] {
        entries.withLock { entries in
            entries.filter { $0.flavor == flavor && $0.blocks($0.counter) }.map(describe)
        }
    }

    private static func describe(_ entry: Entry) -> String {
        var name = [CChar](repeating: 0, count: 32)
        let named = pthread_getname_np(entry.thread, &name, name.count) == 0
        let text = named ? String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
        return "thread \(entry.tid) \"\(text)\""
    }

    /// The registered readers other than the calling thread, described
    /// now, with their counters, for a check in a forked child.
    static func otherReaders() -> [(flavor: String, thread: String, counter: UnsafeMutablePointer<UInt>)] {
        let me = pthread_self()
        return entries.withLock { entries in
            entries.filter { pthread_equal($0.thread, me) == 0 }.map { ($0.flavor, describe($0), $0.counter) }
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
