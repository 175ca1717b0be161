#if ThreadSanitizerAnnotations
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import CURCU

/// The lock of builds with the package trait ThreadSanitizerAnnotations
/// (`make sanitize-thread`, and users' `--sanitize=thread` runs):
/// `Synchronization.Mutex`'s interface on a pthread mutex. The package's
/// ``Lock`` is this type under that trait only.
///
/// Why: on Linux, `Synchronization.Mutex` blocks in the kernel through a
/// priority-inheriting futex that TSan does not model, so TSan misses the
/// ordering a contended lock provides and reports every value it guards as
/// raced. TSan intercepts pthread mutexes. Other builds keep the standard
/// `Mutex`.
package final class PthreadMutex<Value: ~Copyable>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    // Guarded by `mutex`. Behind a pointer rather than in a stored
    // property, so that TSan sees plain accesses under the lock rather
    // than Swift's exclusivity tracking of a class property.
    private let value: UnsafeMutablePointer<Value>

    package init(_ initialValue: consuming Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        value = .allocate(capacity: 1)
        value.initialize(to: initialValue)
    }

    deinit {
        value.deinitialize(count: 1)
        value.deallocate()
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    package func withLock<Result: ~Copyable, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value.pointee)
    }
}

/// What liburcu orders without TSan seeing it (its queues and grace
/// periods use atomics and system calls in code TSan does not instrument),
/// told to TSan under the ThreadSanitizerAnnotations trait:
/// - `call`/`retire` happen before the callback runs (release on the
///   callback's node when queued, acquire when it starts);
/// - every read-section end happens before a grace period that waited for
///   it ends (release on one token per process at each read unlock and
///   QSBR quiescent state, acquire after `synchronize()` and before each
///   callback). One token for all flavors over-approximates: it can hide a
///   race across flavors, which the type system already rules out.
// Only its address is used, never its memory.
@usableFromInline
nonisolated(unsafe) let tsanGracePeriodToken = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)

@inlinable
func tsanRelease(_ address: UnsafeMutableRawPointer) { curcu_tsan_release(address) }

@inlinable
func tsanAcquire(_ address: UnsafeMutableRawPointer) { curcu_tsan_acquire(address) }
#endif
