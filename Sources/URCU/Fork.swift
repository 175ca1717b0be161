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
///
/// Returns what `fork(2)` returns: the child's PID in the parent, 0 in the
/// child, -1 (with `errno`) if there is no child.
public func forkProcess() -> pid_t {
    let readers = ReaderRegistry.otherReaders()
    urcu_memb_call_rcu_before_fork()
    urcu_mb_call_rcu_before_fork()
    urcu_qsbr_call_rcu_before_fork()
    urcu_bp_call_rcu_before_fork()
    urcu_bp_before_fork()
    let pid = curcu_fork()
    if pid == 0 {
        urcu_bp_after_fork_child()
        urcu_bp_call_rcu_after_fork_child()
        urcu_qsbr_call_rcu_after_fork_child()
        urcu_mb_call_rcu_after_fork_child()
        urcu_memb_call_rcu_after_fork_child()
        forkGeneration.wrappingAdd(1, ordering: .relaxed)
        RCUStallMonitor.forgetWatchdog()
        // The copies of other threads' reader counters say what they were
        // doing at the fork, and will say it forever.
        for reader in readers where reader.counter.pointee & (reader.flavor == "qsbr" ? ~0 : readNestingMask) != 0 {
            let state = reader.flavor == "qsbr" ? "online" : "inside a read section"
            rcuMisuse(
                "forkProcess() while \(reader.thread) was \(state) of \(reader.flavor): every \(reader.flavor) grace period in the child would wait for it forever")
        }
    } else {
        urcu_bp_after_fork_parent()
        urcu_bp_call_rcu_after_fork_parent()
        urcu_qsbr_call_rcu_after_fork_parent()
        urcu_mb_call_rcu_after_fork_parent()
        urcu_memb_call_rcu_after_fork_parent()
    }
    return pid
}

/// How many `forkProcess()` calls separate this process from the one that
/// loaded the library: incremented in each child once liburcu's hooks have
/// freed every callback worker but the new default ones. Only the forking
/// thread exists then, so it is the only writer.
package let forkGeneration = Atomic<Int>(0)

/// The nesting count in a memb or mb reader counter
/// (`URCU_GP_CTR_NEST_MASK`: the low half of the word).
private let readNestingMask: UInt = (1 << (UInt.bitWidth / 2)) - 1
