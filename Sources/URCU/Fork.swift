import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Forks the process (`fork(2)`) so that RCU keeps working on both sides.
///
/// liburcu's callback threads are paused around the fork (its
/// `call_rcu_before_fork` / `after_fork_parent` / `after_fork_child`, for
/// every flavor) and bp's reader registry is locked and then pruned
/// (`urcu_bp_before_fork` and friends). Callbacks queued before the fork
/// run in the parent, and their copies run in the child, where each flavor
/// gets a new callback thread.
///
/// Threads registering or unregistering meanwhile (memb and mb readers on
/// their first section and at their exit, QSBR's ``QuiescentStateRCU/registerThread()``,
/// a thread taking or folding a `PercpuRef` counter area) hold locks the child would
/// inherit held: the fork waits until none is inside such a step, and they
/// wait for the fork (`ForkGuard`). A calling thread that is an online
/// QSBR reader is taken offline while the fork waits, and back online in
/// both processes.
///
/// Rules, as liburcu states them (only the calling thread survives in the
/// child, with a copy of everyone's memory):
/// - memb, mb: no other thread may be inside a read section of the flavor;
///   qsbr: no other thread may be online. The child would wait for them in
///   every grace period. The child checks this and stops with a diagnostic.
///   bp has no such rule.
/// - No other thread may be inside `synchronize()` or `barrier()`: their
///   locks would stay held in the child.
/// - The fork waits until every callback thread has finished the batch it
///   is on, grace period included: a thread inside a read section of a
///   flavor with callbacks in flight delays the fork until it leaves, and a
///   callback that waits for the calling thread deadlocks it.
/// - ``CallbackWorker``s do not survive in the child (liburcu frees them
///   there): using one in the child is a misuse, and its `shutdown()` does
///   nothing.
///
/// Returns what `fork(2)` returns: the child's PID in the parent, 0 in the
/// child, -1 (with `errno`) if there is no child.
public func forkProcess() -> pid_t {
    whileBlocked {
        // Grace-period and callback threads first: paused between grace
        // periods, they hold none of liburcu's locks and can no longer
        // enter a registration step, which the exclusive hold below would
        // then wait for while they wait for it.
        for flavor in liburcuFlavors { flavor._accounting.gracePeriodThread.pauseForFork() }
        urcu_memb_call_rcu_before_fork()
        urcu_mb_call_rcu_before_fork()
        urcu_qsbr_call_rcu_before_fork()
        urcu_bp_call_rcu_before_fork()
        urcu_bp_before_fork()
        finishLazyInitialization()
        let (pid, readers) = ForkGuard.excludingEveryoneElse { () -> (pid_t, [ReaderRegistry.Snapshot]) in
            // Read before the fork, under the hold: no thread is changing
            // the registry now.
            let readers = ReaderRegistry.otherReaders()
            return (curcu_fork(), readers)
        }
        if pid == 0 {
            // First: the threads started below (liburcu's new call_rcu
            // threads) may get the stacks of the threads the child lost,
            // and the counter blocks in them, zeroed.
            CounterBlocks.foldOtherThreadsInChild()
            urcu_bp_after_fork_child()
            urcu_bp_call_rcu_after_fork_child()
            urcu_qsbr_call_rcu_after_fork_child()
            urcu_mb_call_rcu_after_fork_child()
            urcu_memb_call_rcu_after_fork_child()
            ForkGuard.enteredChild()
            RCUStallMonitor.restartWatchdogInChild()
            for flavor in liburcuFlavors { flavor._accounting.gracePeriodThread.restartInChild() }
            // The copies of other threads' reader counters say what they were
            // doing at the fork, and would say it forever.
            for reader in readers where reader.counter.pointee & (reader.flavor == "qsbr" ? ~0 : readNestingMask) != 0 {
                let state = reader.flavor == "qsbr" ? "online" : "inside a read section"
                rcuMisuse(
                    "forkProcess() while \(reader.thread) was \(state) of \(reader.flavor): every \(reader.flavor) grace period in the child would wait for it forever")
            }
            ReaderRegistry.forgetOtherThreadsInChild(readers)
        } else {
            urcu_bp_after_fork_parent()
            urcu_bp_call_rcu_after_fork_parent()
            urcu_qsbr_call_rcu_after_fork_parent()
            urcu_mb_call_rcu_after_fork_parent()
            urcu_memb_call_rcu_after_fork_parent()
            for flavor in liburcuFlavors { flavor._accounting.gracePeriodThread.resumeAfterFork() }
        }
        return pid
    }
}

/// Finishes the lazy initialisation of the package's globals that code
/// outside ``ForkGuard`` steps may touch first: one in progress in another
/// thread at the fork would leave the child waiting for it forever
/// (Swift's one-time initialisation). Touching them waits for any such
/// initialisation to end. The registration globals are first touched inside
/// steps, which the fork already waits for.
private func finishLazyInitialization() {
    for flavor in liburcuFlavors { _ = flavor._accounting }
    CallbackNodePool.finishLazyInitialization()
    _ = RCUStallMonitor.threshold
    _ = RCUExit.drainTimeout
}

/// The nesting count in a memb or mb reader counter
/// (`URCU_GP_CTR_NEST_MASK`: the low half of the word).
private let readNestingMask: UInt = (1 << (UInt.bitWidth / 2)) - 1

/// Keeps ``forkProcess()`` out of the short steps that hold a lock a child
/// process would inherit held, and those steps out of a fork in progress.
///
/// Every such step of the package runs inside ``excludingFork(_:)``:
/// registering and unregistering a reader thread (liburcu's registry lock,
/// and the package's reader registry), every step under PercpuRef's
/// counter-area lock (a thread taking or folding its area, a ref's offset
/// allocated, summed or freed), and the stall monitor's bookkeeping. The
/// fork holds the guard alone (``excludingEveryoneElse(_:)``), so it happens only when no
/// thread is inside one of them. A step that finds a fork pending waits for
/// it: the fork goes first, so a steady stream of steps cannot hold it off.
///
/// A reader-writer lock on one atomic word, not a pthread one: in the
/// child, the forking thread has a new thread id, which glibc's rwlock
/// compares to its recorded writer, and a `Synchronization.Mutex` (a
/// priority-inheriting futex holding its owner's thread id) cannot be
/// unlocked there either. Steps are short and forks rare, so waiting
/// sleeps with backoff instead of blocking on a futex.
package enum ForkGuard {
    /// How many threads are inside a step, counting one that has just
    /// announced itself and may be about to back out.
    private static let steps = Atomic<Int>(0)
    /// Whether a fork holds, or is waiting for, the guard.
    private static let forkPending = Atomic<Bool>(false)

    /// Runs `step`, which takes a lock a forked child would inherit held,
    /// while no fork is in progress. Steps must not nest.
    package static func excludingFork<Result, Failure: Error>(
        _ step: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        while true {
            // Announce first, then look for a fork (both sequentially
            // consistent): with the fork's own announce-then-look, at
            // least one of the two sees the other (Dekker).
            steps.wrappingAdd(1, ordering: .sequentiallyConsistent)
            if !forkPending.load(ordering: .sequentiallyConsistent) { break }
            steps.wrappingSubtract(1, ordering: .sequentiallyConsistent)
            sleepWithBackoff(from: 2) { forkPending.load(ordering: .acquiring) }
        }
        defer { steps.wrappingSubtract(1, ordering: .releasing) }
        return try step()
    }

    /// Runs `fork` once no other thread is inside a step, and keeps them
    /// out until it returns. In the child, ``enteredChild()`` must be
    /// called before anything else of the package.
    static func excludingEveryoneElse<Result>(_ fork: () -> Result) -> Result {
        // One fork at a time.
        sleepWithBackoff(from: 2) { forkPending.exchange(true, ordering: .sequentiallyConsistent) }
        sleepWithBackoff(from: 2) { steps.load(ordering: .sequentiallyConsistent) != 0 }
        defer { forkPending.store(false, ordering: .releasing) }
        return fork()
    }

    /// In a forked child: the child's only thread forked, and a step that
    /// had announced itself and was backing out in another thread never
    /// will here.
    static func enteredChild() {
        steps.store(0, ordering: .relaxed)
        forkGeneration.wrappingAdd(1, ordering: .relaxed)
    }

    /// How many times this process descends from a ``forkProcess()``
    /// child: state made by liburcu before a fork (a callback worker's
    /// `call_rcu_data`) is stale when this has changed since.
    package static var generation: Int { forkGeneration.load(ordering: .relaxed) }
    private static let forkGeneration = Atomic<Int>(0)
}
