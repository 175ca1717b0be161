import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Callbacks still queued when the process exits: they run, or they are
/// reported. Never lost in silence.
///
/// From the first ``RCUFlavor/call(_:)`` or ``RCUFlavor/retire(_:)`` of a
/// liburcu flavor, an `atexit` handler waits, at exit, until no flavor has
/// callbacks pending (barriers on a thread of their own, round after round,
/// so that a callback of one flavor that queues a callback of another is
/// waited for too), for at most ``drainTimeout`` seconds in all, then
/// writes one line to standard error for each flavor that still has
/// callbacks pending:
/// `swift-urcu: 12 memb callbacks had not run at exit (waited 5.0 s)`.
/// Nothing is written when every callback ran. An exiting thread that is
/// an online QSBR reader goes offline for the wait; one inside a read
/// section of a flavor, or running one of its callbacks, cannot wait for
/// that flavor's callbacks (they would wait for it): those are reported at
/// once. A process that ends with `_exit` or a signal runs no handler.
public enum RCUExit {
    private static let timeoutNanoseconds = Atomic<UInt64>(5_000_000_000)
    private static let armed = Atomic<Bool>(false)

    /// Seconds exit waits for queued callbacks (5 by default); `nil`:
    /// report them without waiting.
    public static var drainTimeout: Double? {
        get {
            let value = timeoutNanoseconds.load(ordering: .relaxed)
            return value == 0 ? nil : Double(value) / 1e9
        }
        set { timeoutNanoseconds.store(newValue.map { UInt64(max($0, 1e-9) * 1e9) } ?? 0, ordering: .relaxed) }
    }

    /// Installs the exit handler and starts the stall watchdog, once.
    @inline(__always)
    static func arm() {
        if _slowPath(!armed.load(ordering: .relaxed)) { armSlowly() }
    }

    private static func armSlowly() {
        guard !armed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        atexit { RCUExit.drainAll() }
        RCUStallMonitor.startWatchdog()
    }

    private static func drainAll() {
        let timeout = Double(timeoutNanoseconds.load(ordering: .relaxed)) / 1e9
        let started = monotonicSeconds()
        whileBlocked {
            // Waiting for a flavor the exiting thread holds up would wait
            // for the whole timeout, and then in vain.
            let drainable = liburcuFlavors.filter { $0.mayWaitForCallbacks }
            func quiet() -> Bool { drainable.allSatisfy { $0.pendingCallbacks == 0 } }
            guard timeout > 0, !quiet() else { return }
            // The barriers run on a thread of their own so that a grace
            // period that never ends (a reader stuck in a section) cannot
            // hang the exit: the process ends with that thread waiting.
            let barriers = startDetachedThread { runBarriers(untilQuiet: drainable) }
            guard barriers == 0 else { return }
            while !quiet() && monotonicSeconds() - started < timeout { usleep(1_000) }
        }
        let waited = monotonicSeconds() - started
        for flavor in liburcuFlavors {
            let left = flavor.pendingCallbacks
            guard left > 0 else { continue }
            writeStandardError(
                "swift-urcu: \(left) \(flavor.name) callback\(left == 1 ? "" : "s") had not run at exit "
                    + "(waited \((waited * 10).rounded() / 10) s)\n")
        }
    }
}

/// Runs barriers, round after round, until none of `flavors` has callbacks
/// pending: a callback of one flavor that queues a callback of another is
/// waited for too. Unbounded: the exit drain runs it on a thread of its own
/// and stops waiting at its deadline.
func runBarriers(untilQuiet flavors: [any LiburcuFlavor.Type]) {
    while flavors.contains(where: { $0.pendingCallbacks > 0 }) {
        for flavor in flavors where flavor.pendingCallbacks > 0 { flavor.barrier() }
    }
}
