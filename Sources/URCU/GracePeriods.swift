import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Grace-period and callback bookkeeping of one flavor.
///
/// liburcu 0.13 has no polled grace periods, so they are built here on
/// `call_rcu`: every ``RCUFlavor/startPoll()`` takes the next ticket and
/// queues a callback that, after a grace period, records the ticket as
/// completed. A ticket `t` is complete once `completedThrough >= t`.
///
/// Why a maximum is sound even though callbacks may run out of order: the
/// callback for ticket `u > t` was queued after ticket `t` was taken, so the
/// grace period that precedes it also covers every reader that existed when
/// `t` was taken.
public final class GracePeriodAccounting: Sendable {
    private let lastTicket = Atomic<UInt64>(0)
    private let completedThrough = Atomic<UInt64>(0)
    // Updaters write `queued`, the callback thread writes `ran`: on separate
    // cache lines, neither side pulls the other's line on every callback.
    private let queued = CacheLinePadded(Atomic<Int>(0))
    private let ran = CacheLinePadded(Atomic<Int>(0))
    /// The back-pressure limit on pending callbacks; 0 means none. Read on
    /// every callback, written rarely.
    private let limit = Atomic<Int>(0)
    /// Whether the flavor's default callback thread is known to run (see
    /// `LiburcuFlavor.requireDefaultCallbackThread`).
    let hasDefaultCallbackThread = Atomic<Bool>(false)
    /// Where a liburcu flavor's work that waits for a grace period runs
    /// (`LiburcuFlavor._afterGracePeriod`).
    let gracePeriodThread = GracePeriodThread()

    package init() {}

    /// The newest ticket handed out so far.
    var startedTickets: UInt64 { lastTicket.load(ordering: .acquiring) }

    /// Takes the next ticket.
    func nextTicket() -> UInt64 {
        lastTicket.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue
    }

    /// Records that a grace period has elapsed since `ticket` was taken.
    func complete(through ticket: UInt64) {
        var current = completedThrough.load(ordering: .relaxed)
        while current < ticket {
            let (exchanged, original) = completedThrough.weakCompareExchange(
                expected: current, desired: ticket,
                successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            current = original
        }
    }

    func isComplete(_ ticket: UInt64) -> Bool {
        completedThrough.load(ordering: .acquiring) >= ticket
    }

    /// Counts a callback in; call before handing it to the flavor.
    package func callbackQueued() {
        queued.value.wrappingAdd(1, ordering: .relaxed)
    }

    /// Counts a callback out; call once it has run. Releasing: a thread
    /// that reads the count (acquiring) also sees everything the callback
    /// did, which is what ``RCUFlavor/pendingCallbacks`` `== 0` promises.
    package func callbackRan() {
        ran.value.wrappingAdd(1, ordering: .releasing)
    }

    var callbacksRun: Int { ran.value.load(ordering: .acquiring) }

    var pendingLimit: Int? {
        get {
            let value = limit.load(ordering: .relaxed)
            return value > 0 ? value : nil
        }
        set {
            if let newValue, newValue <= 0 {
                rcuMisuse("pendingCallbackLimit must be positive (or nil for none), not \(newValue)")
            }
            limit.store(newValue ?? 0, ordering: .relaxed)
        }
    }

    /// Whether there is no limit, or fewer callbacks than the limit are
    /// pending.
    var hasRoom: Bool {
        let bound = limit.load(ordering: .relaxed)
        return bound == 0 || pendingCallbacks < bound
    }

    /// Sleeps, backing off up to a millisecond, until ``hasRoom``.
    func waitForRoom() {
        sleepWithBackoff(from: 20) { !hasRoom }
    }

    /// Callbacks queued since the process started.
    var callbacksQueued: Int { queued.value.load(ordering: .acquiring) }

    var pendingCallbacks: Int {
        // Read `ran` first: a callback counted there was counted in `queued`
        // before, so the difference never goes negative.
        let ran = ran.value.load(ordering: .acquiring)
        return queued.value.load(ordering: .acquiring) - ran
    }
}

/// A grace period that has been started and can be polled for completion
/// (the kernel's `start_poll_synchronize_rcu` cookie).
///
/// The flavor is part of the type: a cookie of one flavor says nothing about
/// readers of another.
public struct GracePeriodCookie<Flavor: RCUFlavor>: Sendable, Hashable {
    let ticket: UInt64
}

extension RCUFlavor {
    /// Starts a grace period and returns a cookie that ``poll(_:)`` reports
    /// complete once every read section running now has ended
    /// (`start_poll_synchronize_rcu`). Never blocks.
    public static func startPoll() -> GracePeriodCookie<Self> {
        let ticket = _accounting.nextTicket()
        _afterGracePeriod { _accounting.complete(through: ticket) }
        return GracePeriodCookie(ticket: ticket)
    }

    /// Whether a full grace period has elapsed since `cookie` was started
    /// (`poll_state_synchronize_rcu`). Never blocks.
    public static func poll(_ cookie: GracePeriodCookie<Self>) -> Bool {
        _accounting.isComplete(cookie.ticket)
    }

    /// Waits for a grace period unless one has already elapsed since
    /// `cookie` was started (`cond_synchronize_rcu`).
    @available(*, noasync, message: "may block the thread; use 'await synchronize(ifNotCompleted:)' in async code")
    public static func synchronize(ifNotCompleted cookie: GracePeriodCookie<Self>) {
        if !poll(cookie) { synchronize() }
    }

    /// ``synchronize(ifNotCompleted:)`` for async code: suspends instead
    /// of blocking.
    public static func synchronize(ifNotCompleted cookie: GracePeriodCookie<Self>) async {
        if !poll(cookie) { await synchronize() }
    }

    /// Runs `work` on `executor` (a `DispatchQueue`, say) after a grace
    /// period: the "double bounce" (the kernel's `rcu_work`).
    ///
    /// Use it to free an object that readers may still reach when freeing
    /// needs a context that may block (locks, I/O, `barrier()`): `work` is
    /// handed to `executor` as soon as the grace period ends (by the
    /// flavor's grace-period thread, within a few grace periods of the
    /// call, not behind the callback thread's batching).
    /// ``RCUQuiescence/wait()-2wjvb`` waits for `work` to have finished.
    public static func afterGracePeriod(
        on executor: some BlockingExecutor, execute work: @escaping @Sendable () -> Void
    ) {
        RCUQuiescence.workWasQueued()
        _afterGracePeriod {
            executor.execute {
                work()
                RCUQuiescence.workHasFinished()
            }
        }
    }

    /// Runs `work` in a task on `executor` after a grace period: the
    /// "double bounce" for Swift concurrency. `work` must not block its
    /// executor's threads; use the `DispatchQueue` variant for blocking work.
    public static func afterGracePeriod(
        on executor: any TaskExecutor, execute work: @escaping @Sendable () async -> Void
    ) {
        RCUQuiescence.workWasQueued()
        _afterGracePeriod {
            Task(executorPreference: executor) {
                await work()
                RCUQuiescence.workHasFinished()
            }
        }
    }
}

/// Where the second bounce of ``RCUFlavor/afterGracePeriod(on:execute:)-(BlockingExecutor,_)``
/// runs its work: somewhere that may block, unlike a callback thread.
public protocol BlockingExecutor: Sendable {
    /// Runs `work` later, on a thread where blocking is allowed. Must not
    /// run it inline: the caller is a callback thread.
    func execute(_ work: @escaping @Sendable () -> Void)
}

extension DispatchQueue: BlockingExecutor {
    public func execute(_ work: @escaping @Sendable () -> Void) { async(execute: work) }
}
