import CURCU
import Synchronization
import URCU

#if canImport(Glibc)
import Glibc
#endif

/// A place for each live thread in every ref's array of per-thread
/// counters: user space has no per-CPU variables, and a counter that one
/// thread owns needs no atomic read-modify-write.
///
/// A thread takes the lowest free slot on first use and gives it back when
/// it exits, so slots stay dense however many threads come and go. Counter
/// values left by an exited thread stay valid: counters hold deltas, and the
/// next owner adds to them.
///
/// The calling thread keeps its slot as the byte offset of its counter in
/// a ref's counter array, ready to add to the array's address on every get
/// and put. Entry 0 of every array is no thread's, so that an offset of
/// zero can mean "no slot yet": slot `s` is entry `s + 1`.
@usableFromInline
enum ThreadSlot {
    /// Slots never handed out start at `next`; `released` holds the
    /// offsets of slots given back, sorted so that `popLast()` hands out
    /// the lowest.
    private static let free = Mutex<(next: UInt, released: [UInt])>((0, []))

    private static let releaseAtExit: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { _ in ThreadSlot.releaseCallingThread() }
        precondition(status == 0, "swift-urcu: pthread_key_create failed (\(status))")
        return key
    }()

    /// The distance between two threads' counters in a counter array.
    @inlinable
    static var counterStride: UInt { UInt(MemoryLayout<CacheLinePadded<ThreadCounters>>.stride) }

    /// The byte offset of the calling thread's counter, or zero before the
    /// thread has a slot.
    @inlinable
    @inline(__always)
    static var counterOffset: UInt { curcu_thread_counter_offset_get() }

    /// The byte offset of the calling thread's counter, its slot assigned
    /// on first use.
    @usableFromInline
    static var assignedCounterOffset: UInt {
        let offset = counterOffset
        return offset != 0 ? offset : assign()
    }

    private static func assign() -> UInt {
        // A fork step: a child must not inherit the slot lock held, nor a
        // lazy initialisation (the lock's, the key's) in progress.
        let offset = ForkGuard.excludingFork {
            let offset = free.withLock { state -> UInt in
                if let reused = state.released.popLast() { return reused }
                defer { state.next += 1 }
                return (state.next + 1) * counterStride
            }
            pthread_setspecific(releaseAtExit, UnsafeRawPointer(bitPattern: 1))
            return offset
        }
        curcu_thread_counter_offset_set(offset)
        return offset
    }

    private static func releaseCallingThread() {
        let offset = counterOffset
        guard offset != 0 else { return }
        curcu_thread_counter_offset_set(0)
        ForkGuard.excludingFork {
            free.withLock { state in
                state.released.append(offset)
                // Descending: the lowest goes out first, so slots stay dense.
                state.released.sort(by: >)
            }
        }
    }
}
