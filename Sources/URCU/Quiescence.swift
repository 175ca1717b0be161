import Synchronization

/// Waiting until everything torn down so far is really gone: for tests and
/// orderly shutdown.
///
/// Tearing an object down under RCU is a chain: a `PercpuRef`'s kill
/// switches it to atomic mode after a grace period (a callback), its
/// release queues the free behind another grace period (a callback), whose
/// work runs on an executor (``RCUFlavor/afterGracePeriod(on:execute:)``),
/// and that work may retire more. One ``RCUFlavor/barrier()`` waits only
/// for the callbacks queued before it, of one flavor. ``wait()`` waits for
/// the whole chain, whatever the flavors.
public enum RCUQuiescence {
    /// Work that `afterGracePeriod` queued and that has not finished:
    /// counted from the call (before its grace period) to the end of the
    /// work on its executor.
    private static let unfinishedWork = Atomic<Int>(0)

    static func workQueued() { unfinishedWork.wrappingAdd(1, ordering: .relaxed) }
    // Releasing, so that a waiter that sees the count drop sees what the
    // work did.
    static func workFinished() { unfinishedWork.wrappingSubtract(1, ordering: .releasing) }

    /// Blocks until every callback queued so far, of every liburcu flavor,
    /// has run, and every piece of work `afterGracePeriod` handed to an
    /// executor has finished, including what those queued in turn.
    ///
    /// Not inside a read section, nor on a callback thread (it would wait
    /// for itself: diagnosed). Work queued to an executor that this very
    /// thread is blocking (the main queue, from the main thread) never runs:
    /// use `await wait()` there. An online QSBR thread goes offline for the
    /// wait. `ManualRCU`'s callbacks are not waited for: its test drives
    /// them.
    @available(*, noasync, message: "blocks until everything queued has run; use 'await RCUQuiescence.wait()' in async code")
    public static func wait() {
        requireMayWait()
        whileBlocked { drain() }
    }

    /// ``wait()`` for async code: the task suspends while a thread of its
    /// own waits.
    public static func wait() async {
        requireMayWait()
        await onThreadOfItsOwn { drain() }
    }

    private static func drain() {
        func callbacksPending() -> Bool { liburcuFlavors.contains { $0.pendingCallbacks > 0 } }
        repeat {
            runBarriers(untilQuiet: liburcuFlavors)
            // Work on its executor may queue callbacks again: wait for the
            // work, then look at the callbacks once more.
            sleepWithBackoff(from: 20) { unfinishedWork.load(ordering: .acquiring) > 0 && !callbacksPending() }
        } while callbacksPending() || unfinishedWork.load(ordering: .acquiring) > 0
    }

    private static func requireMayWait() {
        for flavor in liburcuFlavors where !flavor.mayWaitForCallbacks {
            rcuMisuse(
                "RCUQuiescence.wait() called inside a read section of \(flavor.name) or from one of its callbacks; "
                    + "it would wait for itself")
        }
    }
}

/// Runs barriers, round after round, until none of `flavors` has callbacks
/// pending: a callback of one flavor that queues a callback of another is
/// waited for too. The exit drain and ``RCUQuiescence`` share it.
func runBarriers(untilQuiet flavors: [any LiburcuFlavor.Type]) {
    while flavors.contains(where: { $0.pendingCallbacks > 0 }) {
        for flavor in flavors where flavor.pendingCallbacks > 0 { flavor.barrier() }
    }
}
