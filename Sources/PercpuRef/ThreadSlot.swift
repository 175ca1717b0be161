import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Small integers for live threads, so that per-thread counters can be
/// arrays indexed by thread: user space has no per-CPU variables, and a
/// counter that one thread owns needs no atomic read-modify-write.
///
/// A thread takes the lowest free slot on first use and gives it back when
/// it exits, so slots stay dense however many threads come and go. Counter
/// values left by an exited thread stay valid: counters hold deltas, and the
/// next owner adds to them.
@usableFromInline
enum ThreadSlot {
    private static let free = Mutex<(next: Int, released: [Int])>((0, []))

    private static let releaseAtExit: pthread_key_t = {
        var key = pthread_key_t()
        let status = pthread_key_create(&key) { _ in ThreadSlot.releaseCallingThread() }
        precondition(status == 0, "swift-urcu: pthread_key_create failed (\(status))")
        return key
    }()

    /// The calling thread's slot, or `UInt.max` before the thread has one:
    /// one comparison against a table size then covers both "no slot yet"
    /// and "slot beyond the table".
    @inlinable
    @inline(__always)
    static var index: UInt { curcu_thread_slot_get() &- 1 }

    /// The calling thread's slot, assigned on first use.
    @usableFromInline
    static var assigned: Int {
        let stored = curcu_thread_slot_get()
        return stored != 0 ? Int(stored - 1) : assign()
    }

    private static func assign() -> Int {
        let slot = free.withLock { state -> Int in
            if let reused = state.released.popLast() { return reused }
            defer { state.next += 1 }
            return state.next
        }
        curcu_thread_slot_set(UInt(slot + 1))
        pthread_setspecific(releaseAtExit, UnsafeRawPointer(bitPattern: 1))
        return slot
    }

    private static func releaseCallingThread() {
        let stored = curcu_thread_slot_get()
        guard stored != 0 else { return }
        curcu_thread_slot_set(0)
        free.withLock { state in
            state.released.append(Int(stored - 1))
            // Lowest first, so slots stay dense.
            state.released.sort(by: >)
        }
    }
}
