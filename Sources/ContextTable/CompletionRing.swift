import Synchronization
import URCU

/// The ring header user space can write (the mmapped `struct aio_ring`'s
/// `head` and `tail`). Nothing the library decides may depend on it.
public struct RingIndices: Sendable {
    public var head: UInt32
    public var tail: UInt32
}

/// One completion: the request's serial number and its result.
public struct CompletionEvent: Equatable, Sendable {
    /// The result of a cancelled request (`-ECANCELED`).
    public static let cancelled = -125

    public let request: Int
    public let result: Int
}

/// A context's completion ring (the kernel's `aio_ring` pages).
///
/// The library keeps its own tail and its own count of free slots; the
/// user-visible indices are published for the user and read back only
/// modulo the capacity, so any value written there stays in bounds.
final class CompletionRing: @unchecked Sendable {
    let capacity: Int
    private let events: UnsafeMutablePointer<CompletionEvent>
    let userIndices: UnsafeMutablePointer<RingIndices>
    /// Guards `tail` and the event slots (`ctx->completion_lock`).
    private let lock = Mutex<Int>(0)
    /// Slots not reserved by a request in flight or an unreaped event
    /// (`ctx->reqs_available`).
    private let available: Atomic<Int>

    /// - Parameter requests: events the ring must hold at once. One slot
    ///   more is allocated, so that head == tail always means empty.
    init(requests: Int) {
        capacity = requests + 1
        events = .allocate(capacity: capacity)
        events.initialize(repeating: CompletionEvent(request: 0, result: 0), count: capacity)
        userIndices = .allocate(capacity: 1)
        userIndices.initialize(to: RingIndices(head: 0, tail: 0))
        available = Atomic(requests)
    }

    /// Reserves a slot for a request's future event.
    func reserveSlot() -> Bool {
        var current = available.load(ordering: .relaxed)
        while current > 0 {
            let (exchanged, original) = available.weakCompareExchange(
                expected: current, desired: current - 1, ordering: .acquiringAndReleasing)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func post(_ event: CompletionEvent) {
        lock.withLock { tail in
            events[tail] = event
            tail = (tail + 1) % capacity
            userIndices.pointee.tail = UInt32(tail)
        }
    }

    /// Reads events between the user's head (sanitised) and the library's
    /// tail, and frees their slots. A corrupted head only changes which
    /// events are returned, and how many slots come back, within bounds.
    func reap(maximum: Int) -> [CompletionEvent] {
        lock.withLock { tail in
            var head = Int(userIndices.pointee.head) % capacity
            var reaped: [CompletionEvent] = []
            while head != tail, reaped.count < maximum {
                reaped.append(events[head])
                head = (head + 1) % capacity
            }
            userIndices.pointee.head = UInt32(head)
            let returned = min(reaped.count, capacity - 1 - available.load(ordering: .relaxed))
            available.wrappingAdd(returned, ordering: .relaxed)
            return reaped
        }
    }

    func deallocate() {
        // Poison before freeing, so a use after free is loud in debug runs.
        userIndices.pointee = RingIndices(head: .max, tail: .max)
        events.deinitialize(count: capacity)
        events.deallocate()
        userIndices.deallocate()
    }
}
