import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One thread's counters in one `PercpuRef`, at the ref's offset in the
/// thread's counter area or block (all-zero memory is two zero counters).
/// Gets and puts are counted apart: a get followed by a put then touches
/// two addresses, not the same one twice, so neither waits for the other's
/// store (measured: 4x faster per pair). The reference count is the sum of
/// `gets - puts` over all threads.
@usableFromInline
package struct ThreadCounters: ~Copyable {
    @usableFromInline package let gets = Atomic<Int>(0)
    @usableFromInline package let puts = Atomic<Int>(0)

    /// Gets minus puts.
    package var net: Int { gets.load(ordering: .relaxed) &- puts.load(ordering: .relaxed) }

    /// Returns gets minus puts and zeroes both; writes nothing if they are
    /// zero, so an area's untouched pages stay unallocated.
    package func takeAll() -> Int {
        let (got, put) = (gets.load(ordering: .relaxed), puts.load(ordering: .relaxed))
        if got != 0 { gets.store(0, ordering: .relaxed) }
        if put != 0 { puts.store(0, ordering: .relaxed) }
        return got &- put
    }

    /// Counts `delta` gets (positive) or `-delta` puts (negative).
    @inlinable
    @inline(__always)
    package func count(_ delta: Int) {
        if delta >= 0 {
            gets.add(delta)
        } else {
            puts.add(-delta)
        }
    }

    /// The distance between two refs' counters, in an area or a block:
    /// offsets are multiples of it.
    @inlinable
    package static var stride: UInt { UInt(MemoryLayout<ThreadCounters>.stride) }

    /// The counters at `offset` (a byte offset) from `base`.
    @inlinable
    @inline(__always)
    package static func at(_ base: UInt, offset: UInt) -> UnsafeMutablePointer<ThreadCounters> {
        curcu_counter_address(base, offset).assumingMemoryBound(to: ThreadCounters.self)
    }
}

extension Atomic where Value == Int {
    /// Adds `n` with a load and a store, not an atomic read-modify-write:
    /// only the owning thread writes its counters, and the switch to atomic
    /// mode reads them only after a grace period, once every read section
    /// that could write them has ended.
    @inlinable
    @inline(__always)
    func add(_ n: Int) {
        store(load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }
}

/// Every thread's *counter block*: `PercpuRef` counters for the first
/// ``bytes`` of offsets, in the thread's static thread-local storage
/// (`curcu_counter_block`), at a fixed distance from the thread pointer.
/// A get finds its counter there with no per-thread address to load, as
/// the kernel's per-CPU counters are found from `%gs`: `PercpuRef` counts
/// there on the fast path of a QSBR ref when QSBR's read-side checks are
/// compiled out (the checked path loads the thread's online area anyway,
/// and counts in it).
///
/// That fast path cannot tell whether the thread's block is known, so a
/// thread's block is registered before it can count: when it registers
/// with QSBR (``QuiescentStateRCU/registerThread()``,
/// ``QuiescentStateRCU/withRegisteredThread(_:)``) and when it runs a
/// callback (liburcu's own call_rcu threads register with QSBR without
/// Swift). A block stays registered until its thread exits, when its
/// counts move to ``State/folded``: the block's memory then goes to the
/// next thread's static TLS, zeroed by the C library.
///
/// Invariants, under `state`'s lock: for every offset below ``bytes``, the
/// references the blocks hold are `folded` plus, over the registered
/// blocks, gets minus puts; a free offset is zero in every block and in
/// `folded` (a new thread's block is zero from its creation).
@usableFromInline
package enum CounterBlocks {
    /// The size of a block: the offsets it holds are those below it.
    @inlinable
    package static var bytes: UInt { UInt(CURCU_COUNTER_BLOCK_BYTES) }

    private struct State {
        var blocks: Set<UInt> = []
        /// Per offset: gets minus puts that exited threads counted.
        var folded = [Int](repeating: 0, count: Int(CounterBlocks.bytes / ThreadCounters.stride))
    }
    private static let state = Lock(State())

    private static let foldAtExit = threadExitKey { _ in CounterBlocks.foldCallingThread() }

    /// The calling thread's block.
    @inlinable
    @inline(__always)
    package static var callingThreadBlock: UInt { curcu_counter_block_get() }

    /// Whether the calling thread's block is registered.
    package static var isCallingThreadRegistered: Bool { curcu_counter_block_registered_get() != 0 }

    /// Registers the calling thread's block, if it is not yet.
    @inline(__always)
    package static func registerCallingThread() {
        if _slowPath(!isCallingThreadRegistered) { addCallingThread() }
    }

    private static func addCallingThread() {
        let block = callingThreadBlock
        ForkGuard.excludingFork {
            state.withLock { _ = $0.blocks.insert(block) }
            pthread_setspecific(foldAtExit, UnsafeRawPointer(bitPattern: 1))
        }
        curcu_counter_block_registered_set(1)
    }

    /// At the calling thread's exit: its counts move to `folded`, its block
    /// is zeroed and forgotten. Under the lock, so that a switch's sum sees
    /// each count once: in the block before, or in `folded` after.
    private static func foldCallingThread() {
        let block = callingThreadBlock
        curcu_counter_block_registered_set(0)
        ForkGuard.excludingFork { state.withLock { fold(block, &$0) } }
    }

    /// In the child of ``forkProcess()``, where only the calling thread
    /// lives, before the child starts a thread: the C library gives the
    /// other threads' stacks, and the static TLS in them, to the child's new
    /// threads, zeroed. Their blocks' counts move to `folded` first. No
    /// lock is held at the fork: the fork waits for every step that takes
    /// this lock (directly, or under the counter areas' lock).
    static func foldOtherThreadsInChild() {
        let own = callingThreadBlock
        state.withLock { state in
            for block in state.blocks where block != own { fold(block, &state) }
        }
    }

    /// Under the lock: moves `block`'s counts to `folded`, zeroes it and
    /// forgets it.
    private static func fold(_ block: UInt, _ state: inout State) {
        for index in state.folded.indices {
            state.folded[index] &+= ThreadCounters.at(block, offset: UInt(index) * ThreadCounters.stride).pointee.takeAll()
        }
        state.blocks.remove(block)
    }

    /// The references counted at `offset` (below ``bytes``) in every
    /// block, live or folded, which are zeroed. Called under the lock of
    /// `PercpuRef`'s counter areas, which is taken first.
    package static func takeAll(atOffset offset: UInt) -> Int {
        state.withLock { state in
            let index = Int(offset / ThreadCounters.stride)
            var sum = state.folded[index]
            state.folded[index] = 0
            for block in state.blocks { sum &+= ThreadCounters.at(block, offset: offset).pointee.takeAll() }
            return sum
        }
    }

    /// The references counted at `offset` (below ``bytes``), left in place.
    package static func peek(atOffset offset: UInt) -> (live: Int, folded: Int) {
        state.withLock { state in
            (state.blocks.reduce(0) { $0 &+ ThreadCounters.at($1, offset: offset).pointee.net },
             state.folded[Int(offset / ThreadCounters.stride)])
        }
    }
}
