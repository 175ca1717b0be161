import CURCU

// liburcu's read side as the flavors call it: read sections, and QSBR's
// quiescent states and online/offline changes. The package trait
// InlineFastPaths (on by default) picks the static-inline bodies of the
// urcu/static headers, what a C program gets with _LGPL_SOURCE: they
// inline into the caller, which places LGPL-2.1 code in its binary.
// Without the trait the same operations are calls into liburcu's shared
// libraries, at the cost `make bench` measures. The choice is made here
// only, so no call site makes it.

#if InlineFastPaths
@inlinable @inline(__always) func liburcuMembReadLock() { _urcu_memb_read_lock() }
@inlinable @inline(__always) func liburcuMembReadUnlock() { _urcu_memb_read_unlock() }
@inlinable @inline(__always) func liburcuMembReadOngoing() -> Bool { _urcu_memb_read_ongoing() != 0 }

@inlinable @inline(__always) func liburcuMbReadLock() { _urcu_mb_read_lock() }
@inlinable @inline(__always) func liburcuMbReadUnlock() { _urcu_mb_read_unlock() }
@inlinable @inline(__always) func liburcuMbReadOngoing() -> Bool { _urcu_mb_read_ongoing() != 0 }

@inlinable @inline(__always) func liburcuBpReadLock() { _urcu_bp_read_lock() }
@inlinable @inline(__always) func liburcuBpReadUnlock() { _urcu_bp_read_unlock() }
@inlinable @inline(__always) func liburcuBpReadOngoing() -> Bool { _urcu_bp_read_ongoing() != 0 }

@inlinable @inline(__always) func liburcuQsbrReadLock() { _urcu_qsbr_read_lock() }
@inlinable @inline(__always) func liburcuQsbrReadUnlock() { _urcu_qsbr_read_unlock() }
/// QSBR's "read ongoing" means "online": its read lock is empty.
@inlinable @inline(__always) func liburcuQsbrReadOngoing() -> Bool { _urcu_qsbr_read_ongoing() != 0 }
@inlinable @inline(__always) func liburcuQsbrQuiescentState() { _urcu_qsbr_quiescent_state() }
@inlinable @inline(__always) func liburcuQsbrThreadOffline() { _urcu_qsbr_thread_offline() }
@inlinable @inline(__always) func liburcuQsbrThreadOnline() { _urcu_qsbr_thread_online() }
#else
@inlinable @inline(__always) func liburcuMembReadLock() { urcu_memb_read_lock() }
@inlinable @inline(__always) func liburcuMembReadUnlock() { urcu_memb_read_unlock() }
@inlinable @inline(__always) func liburcuMembReadOngoing() -> Bool { urcu_memb_read_ongoing() != 0 }

@inlinable @inline(__always) func liburcuMbReadLock() { urcu_mb_read_lock() }
@inlinable @inline(__always) func liburcuMbReadUnlock() { urcu_mb_read_unlock() }
@inlinable @inline(__always) func liburcuMbReadOngoing() -> Bool { urcu_mb_read_ongoing() != 0 }

@inlinable @inline(__always) func liburcuBpReadLock() { urcu_bp_read_lock() }
@inlinable @inline(__always) func liburcuBpReadUnlock() { urcu_bp_read_unlock() }
@inlinable @inline(__always) func liburcuBpReadOngoing() -> Bool { urcu_bp_read_ongoing() != 0 }

@inlinable @inline(__always) func liburcuQsbrReadLock() { urcu_qsbr_read_lock() }
@inlinable @inline(__always) func liburcuQsbrReadUnlock() { urcu_qsbr_read_unlock() }
/// QSBR's "read ongoing" means "online": its read lock is empty.
@inlinable @inline(__always) func liburcuQsbrReadOngoing() -> Bool { urcu_qsbr_read_ongoing() != 0 }
@inlinable @inline(__always) func liburcuQsbrQuiescentState() { urcu_qsbr_quiescent_state() }
@inlinable @inline(__always) func liburcuQsbrThreadOffline() { urcu_qsbr_thread_offline() }
@inlinable @inline(__always) func liburcuQsbrThreadOnline() { urcu_qsbr_thread_online() }
#endif
