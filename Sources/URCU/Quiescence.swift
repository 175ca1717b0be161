import Synchronization

/// Waiting until everything torn down so far is really gone: for tests and
/// orderly shutdown.
///
/// Tearing an object down under RCU is a chain: a `PercpuRef`'s kill
/// switches it to atomic mode after a grace period (a callback), its
/// release queues the free behind another grace period (a callback), whose
/// work runs on an executor (``RCUFlavor/afterGracePeriod(on:execute:)-(BlockingExecutor,_)``),
/// and that work may retire more. One ``RCUFlavor/barrier()-2rd5d`` waits only
/// for the callbacks queued before it, of one flavor. ``wait()-2wjvb`` waits for
/// the whole chain, whatever the flavors.
public enum RCUQuiescence {
    /// `afterGracePeriod` work handed in, and work finished, since the
    /// process started: from the call (before its grace period) to the end
    /// of the work on its executor.
    private static let workQueued = Atomic<Int>(0)
    private static let workFinished = Atomic<Int>(0)

    static func workWasQueued() { workQueued.wrappingAdd(1, ordering: .relaxed) }
    // Releasing, so that a waiter that sees the count grow sees what the
    // work did.
    static func workHasFinished() { workFinished.wrappingAdd(1, ordering: .releasing) }

    /// The most rounds ``wait()-2wjvb`` runs: chains longer than this many hops
    /// are not waited for to their end, so that work other threads keep
    /// queueing cannot hold the caller forever.
    public static let maximumRounds = 16

    /// Blocks until every callback queued so far, of every liburcu flavor,
    /// has run, and every piece of work `afterGracePeriod` handed to an
    /// executor has finished, including what those queued in turn.
    ///
    /// It works in rounds: each waits for the callbacks of every flavor
    /// queued before it (a barrier each) and for the work queued before it,
    /// and the next round waits for what the previous one's callbacks and
    /// work queued. It returns after a round during which nothing new was
    /// queued, or after ``maximumRounds`` rounds: other threads that keep
    /// queueing cannot hold it forever.
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
        func queuedSoFar() -> (callbacks: [Int], work: Int) {
            (liburcuFlavors.map { $0._accounting.callbacksQueued }, workQueued.load(ordering: .acquiring))
        }
        for _ in 0..<maximumRounds {
            let before = queuedSoFar()
            // A flavor with nothing pending has run everything queued so far.
            for flavor in liburcuFlavors where flavor.pendingCallbacks > 0 { flavor.barrier() }
            // Counts, not identities: work may finish out of order.
            sleepWithBackoff(from: 20) { workFinished.load(ordering: .acquiring) < before.work }
            if queuedSoFar() == before && workFinished.load(ordering: .acquiring) >= before.work { return }
        }
    }

    private static func requireMayWait() {
        for flavor in liburcuFlavors where !flavor.mayWaitForCallbacks {
            rcuMisuse(
                "RCUQuiescence.wait() called inside a read section of \(flavor.name) or from one of its callbacks; "
                    + "it would wait for itself")
        }
    }
}
