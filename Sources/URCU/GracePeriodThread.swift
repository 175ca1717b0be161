import CURCU
import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The name of every flavor's grace-period thread (in `top -H`, `ps -L`,
/// a debugger).
package let gracePeriodThreadName = "urcu-gp"

/// One thread per liburcu flavor that runs grace periods while there is
/// work waiting for one: what `await synchronize()`, ``RCUFlavor/startPoll()``
/// and ``RCUFlavor/afterGracePeriod(on:execute:)`` ride on.
///
/// liburcu's call_rcu thread sleeps 10 ms after each batch of callbacks, so
/// anything that waits on a callback waits about that long. This thread
/// instead runs `synchronize_rcu` as soon as work arrives and serves, after
/// each grace period, every item that arrived before it started: the
/// kernel's batching of `synchronize_rcu` callers, so a thousand waiters
/// cost a few grace periods, not a thousand. Idle, it sleeps. It is never
/// registered with any flavor, which suits QSBR (an unregistered caller of
/// its `synchronize_rcu` holds up no grace period).
final class GracePeriodThread: Sendable {
    private struct State {
        /// Items waiting for the next grace period to start.
        var waiting: [@Sendable () -> Void] = []
        /// Items handed in so far, and items run so far: an item's ticket
        /// is `queued` just after it was handed in.
        var queued: UInt64 = 0
        var served: UInt64 = 0
        /// Tickets whose grace period has started (taken in a batch).
        var started: UInt64 = 0
        var running = false
        var sleeping = false
        /// forkProcess() asked the thread to stop between grace periods.
        var pauseRequested = false
        var paused = false
        /// The flavor's synchronize, from the first item.
        var synchronize: (@Sendable () -> Void)?
        var gracePeriods = 0
    }
    private let state = Lock(State())
    private let wakeUp = DispatchSemaphore(value: 0)

    /// Runs `item` on this thread after a grace period that starts after
    /// this call, and returns its ticket (for ``waitUntilServed(_:)``).
    /// Never blocks; the item must not block either.
    func afterGracePeriod(
        synchronize: @escaping @Sendable () -> Void, _ item: @escaping @Sendable () -> Void
    ) -> UInt64 {
        let (ticket, start, wake) = state.withLock { state -> (UInt64, Bool, Bool) in
            state.waiting.append(item)
            state.queued += 1
            if state.synchronize == nil { state.synchronize = synchronize }
            let start = !state.running
            state.running = true
            let wake = state.sleeping
            state.sleeping = false
            return (state.queued, start, wake)
        }
        if start { startThread() } else if wake { wakeUp.signal() }
        return ticket
    }

    /// The ticket of the last item handed in so far.
    var lastTicket: UInt64 { state.withLock { $0.queued } }

    /// Whether every item up to `ticket` has run.
    func hasServed(_ ticket: UInt64) -> Bool { state.withLock { $0.served >= ticket } }

    /// Blocks until every item up to `ticket` has run.
    func waitUntilServed(_ ticket: UInt64) {
        sleepWithBackoff(from: 20) { !hasServed(ticket) }
    }

    /// The last ticket whose grace period has started.
    var startedTicket: UInt64 { state.withLock { $0.started } }

    /// Grace periods this thread has run: how well it batches.
    var gracePeriodsRun: Int { state.withLock { $0.gracePeriods } }

    private func startThread() {
        if startDetachedThread({ self.serve() }) != 0 {
            rcuMisuse("cannot start a grace-period thread: the system has no thread to spare")
        }
    }

    private func serve() {
        pthread_setname_np(pthread_self(), gracePeriodThreadName)
        requestShortTimeSlice()
        while true {
            let next = state.withLock { state -> (batch: [@Sendable () -> Void], synchronize: (@Sendable () -> Void)?, pause: Bool) in
                if state.pauseRequested {
                    state.paused = true
                    return ([], nil, true)
                }
                if state.waiting.isEmpty {
                    state.sleeping = true
                    return ([], nil, false)
                }
                defer { state.waiting = [] }
                state.started = state.queued
                return (state.waiting, state.synchronize, false)
            }
            guard let synchronize = next.synchronize else {
                // Asleep, or paused for a fork: woken by the next item or
                // by resumeAfterFork().
                wakeUp.wait()
                continue
            }
            // Every item of the batch was handed in before this grace
            // period started, so it covers their readers.
            synchronize()
            for item in next.batch { item() }
            state.withLock {
                $0.served += UInt64(next.batch.count)
                $0.gracePeriods += 1
            }
        }
    }

    /// Asks the scheduler to let this thread run as soon as it wakes, by
    /// giving it a short time slice (Linux 6.12 and later: `sched_runtime`
    /// of the default policy; earlier kernels ignore it). The thread runs
    /// for microseconds per wake-up, and every waiter waits on its wake-up:
    /// with the default slice (3 ms) a wake-up on cores kept busy (readers
    /// in their sections, say) waited for the running thread's slice to
    /// end. Measured with Examples' ReadBench, 2 busy readers on 2 cores
    /// (2026-11-30): `afterGracePeriod(on:)` to its work, median 3.5 to 7.4
    /// ms in five runs before, 40 to 65 µs in seven runs of eight after.
    /// Only for the default policy, whose nice value it keeps.
    /// GracePeriodThreadTests reads the slice back.
    private func requestShortTimeSlice() {
        guard sched_getscheduler(0) == SCHED_OTHER else { return }
        errno = 0
        // The calling thread's nice value (Linux's PRIO_PROCESS with 0).
        let nice = getpriority(__priority_which_t(PRIO_PROCESS.rawValue), 0)
        guard errno == 0 else { return }
        var attributes = curcu_sched_attr(
            size: UInt32(MemoryLayout<curcu_sched_attr>.size), policy: UInt32(SCHED_OTHER), flags: 0,
            nice: nice, priority: 0, runtime: 100_000, deadline: 0, period: 0)
        // A kernel that refuses it leaves the thread as it was.
        _ = curcu_sched_setattr(&attributes)
    }

    /// Before a fork: waits until the thread is between grace periods
    /// (liburcu's grace-period lock would be inherited held otherwise) and
    /// keeps it there.
    func pauseForFork() {
        let wake = state.withLock { state -> Bool in
            state.pauseRequested = true
            defer { state.sleeping = false }
            return state.sleeping
        }
        if wake { wakeUp.signal() }
        sleepWithBackoff(from: 20) { state.withLock { $0.running && !$0.paused } }
    }

    /// After a fork, in the parent: lets the thread go on.
    func resumeAfterFork() {
        let wasPaused = state.withLock { state -> Bool in
            state.pauseRequested = false
            defer { state.paused = false }
            return state.paused
        }
        if wasPaused { wakeUp.signal() }
    }

    /// After a fork, in the child: the thread did not survive it; a new
    /// one serves what is waiting.
    func restartInChild() {
        let start = state.withLock { state -> Bool in
            state.pauseRequested = false
            state.paused = false
            state.sleeping = false
            state.running = !state.waiting.isEmpty
            return state.running
        }
        if start { startThread() }
    }
}
