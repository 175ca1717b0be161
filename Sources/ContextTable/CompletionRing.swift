import CURCU
import Synchronization
import URCU

/// The ring header user space can write (the mmapped `struct aio_ring`'s
/// `head` and `tail`). Nothing the library decides may depend on it beyond
/// which events a reap returns.
public struct RingIndices: Sendable {
    /// The index of the next event to reap (`aio_ring.head`), advanced by
    /// ``ContextLease/reapEvents(maximum:)``; the user may write anything
    /// here, and the library reads it modulo the ring's capacity.
    public var head: UInt32
    /// The index after the last event posted (`aio_ring.tail`), written by
    /// the library at each completion and never read back.
    public var tail: UInt32
}

/// One completion: the request's serial number and its result.
public struct CompletionEvent: Equatable, Sendable {
    /// The result of a cancelled request (`-ECANCELED`).
    public static let cancelled = -125

    /// The serial number of the completed request, unique in the process.
    public let request: Int
    /// The result the request completed with: the value passed to
    /// ``ContextRequest/complete(result:)``, or ``cancelled``.
    public let result: Int
}

/// A context's completion ring (the kernel's `aio_ring` pages).
///
/// The library keeps its own tail, its own count of free slots and its own
/// count of events posted and not yet given back; the user-visible indices
/// are published for the user and read back only modulo the capacity.
/// Slots come back as the kernel's `refill_reqs_available` gives them back:
/// at most the events posted since the last refill, less those the user's
/// head says are still in the ring. A garbage head can therefore delay
/// slots or change which events are reaped, but never hand back a slot a
/// request in flight still holds, and never overwrite an unreaped event.
final class CompletionRing: @unchecked Sendable {
    let capacity: Int
    private let events: UnsafeMutablePointer<CompletionEvent>
    let userIndices: UnsafeMutablePointer<RingIndices>

    private struct State {
        var tail = 0
        /// Events posted and not yet given back as free slots
        /// (`ctx->completed_events`).
        var postedNotCredited = 0
    }
    /// Guards the events, the tail and the count (`ctx->completion_lock`).
    private let lock = Lock(State())
    /// Slots not held by a request in flight or an event not given back
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

    /// Reserves a slot for a request's future event. When none is free,
    /// first gives back the slots of events the user has reaped straight
    /// from the shared ring (`user_refill_reqs_available`).
    func reserveSlot() -> Bool {
        if takeSlot() { return true }
        lock.withLock { refill(&$0) }
        return takeSlot()
    }

    private func takeSlot() -> Bool {
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
        lock.withLock { state in
            events[state.tail] = event
            state.tail = (state.tail + 1) % capacity
            state.postedNotCredited += 1
            storeUserIndex(\.tail, UInt32(state.tail))
        }
    }

    /// Reads events between the user's head (sanitised) and the library's
    /// tail, moves the head past them, and gives back the slots of reaped
    /// events.
    func reap(maximum: Int) -> [CompletionEvent] {
        lock.withLock { state in
            var head = Int(loadUserIndex(\.head)) % capacity
            var reaped: [CompletionEvent] = []
            while head != state.tail, reaped.count < maximum {
                reaped.append(events[head])
                head = (head + 1) % capacity
            }
            storeUserIndex(\.head, UInt32(head))
            refill(&state)
            return reaped
        }
    }

    /// `refill_reqs_available`: of the events posted since the last refill,
    /// those no longer between the user's head and the tail have been
    /// reaped; their slots are free again.
    private func refill(_ state: inout State) {
        let head = Int(loadUserIndex(\.head)) % capacity
        let stillInRing = (state.tail - head + capacity) % capacity
        let reaped = state.postedNotCredited - stillInRing
        guard reaped > 0 else { return }
        state.postedNotCredited -= reaped
        available.wrappingAdd(reaped, ordering: .relaxed)
    }

    /// The user-writable index at `field`, read atomically: user threads
    /// write it while the library reads.
    private func loadUserIndex(_ field: KeyPath<RingIndices, UInt32>) -> UInt32 {
        curcu_load_relaxed_u32(userIndexAddress(field))
    }

    private func storeUserIndex(_ field: KeyPath<RingIndices, UInt32>, _ value: UInt32) {
        curcu_store_relaxed_u32(userIndexAddress(field), value)
    }

    private func userIndexAddress(_ field: KeyPath<RingIndices, UInt32>) -> UnsafeMutablePointer<UInt32> {
        (UnsafeMutableRawPointer(userIndices) + MemoryLayout<RingIndices>.offset(of: field)!)
            .assumingMemoryBound(to: UInt32.self)
    }

    /// Slots free for new requests (the spec's `reqsAvail`).
    var availableSlots: Int { available.load(ordering: .relaxed) }

    func deallocate() {
        // Poison before freeing: a reader that still reaches the ring after
        // the free (no grace period) finds indices no live ring has, which
        // the race tests check for.
        storeUserIndex(\.head, .max)
        storeUserIndex(\.tail, .max)
        events.deinitialize(count: capacity)
        events.deallocate()
        userIndices.deallocate()
    }
}
