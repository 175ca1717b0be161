import CURCU
import Synchronization
import URCU

#if canImport(Glibc)
import Glibc
#endif

/// The per-thread counters of every ``PercpuRef`` in the process, laid out
/// as the kernel's percpu allocator lays out per-CPU variables: each thread
/// that counts owns an *area*, and each ref owns an *offset*, the same in
/// every area. A get or put in percpu mode adds to `area + offset` of the
/// calling thread: no shared cache line, no atomic read-modify-write.
///
/// A ref costs `ThreadCounters` (16 bytes) per thread that has an area, not
/// per thread that used it; areas are reserved address space whose pages
/// the kernel supplies when first written, so offsets no thread touched
/// cost nothing.
///
/// Invariants, all under `state`'s lock:
/// - A free offset is zero in every area, and its `folded` entry is zero:
///   a ref that takes it starts with no per-thread references.
/// - For a ref in percpu mode or switching, the references the per-thread
///   counters hold are `folded[offset]` plus, over `areas`, gets minus puts
///   at the offset. Exited threads' counters are moved into `folded` (the
///   fold), and the sum at a switch (``collect(_:)``) empties both.
/// - Once a switch has collected, the offset stays zero everywhere until
///   the ref is back in percpu mode: no thread counts on it in atomic mode.
///
/// The first offsets also have a place in every thread's counter block
/// (`CounterBlocks`, in URCU), where QSBR refs count with QSBR's
/// read-side checks compiled out; the switch and a freed offset's zeroing
/// take in the blocks too, so a count may be in either place.
///
/// Per thread: its QSBR online area (`curcu_thread_counting` in CURCU) is
/// zero or its area, and nonzero only while the thread is an online QSBR
/// reader; a QSBR get or put with read-side checks counts on its fast path
/// only with it nonzero.
@usableFromInline
package enum CounterAreas {
    /// The distance between two refs' counters in an area.
    @inlinable
    static var stride: UInt { ThreadCounters.stride }

    /// Offsets in existence at most (the address space each area reserves:
    /// 64 MiB). Refs created beyond them count on their shared count.
    static let maximumOffsets = 1 << 22
    /// Offsets made usable in every area at a time (64 KiB of each).
    static let offsetsPerCommit = 4096

    private struct State {
        /// The areas of live threads, which the switch sums.
        var areas: Set<UInt> = []
        /// Areas of exited threads, folded and zero, for the next thread.
        var spareAreas: [UInt] = []
        /// Offsets below this are readable and writable in every area.
        var committedOffsets = 0
        /// Offsets never handed out start here.
        var nextOffset = 0
        /// Offsets handed out at most: `maximumOffsets`, unless a test
        /// lowered it.
        var offsetLimit = maximumOffsets
        var freeOffsets: [Int] = []
        /// Per offset: gets minus puts that exited threads counted.
        var folded: [Int] = []
    }
    private static let state = Lock(State())

    private static let foldAtExit = threadExitKey { _ in CounterAreas.foldCallingThread() }

    /// The calling thread's area, or zero before its first count.
    @inlinable
    @inline(__always)
    static var callingThreadArea: UInt { curcu_thread_counter_area_get() }

    /// The calling thread's area if it is an online QSBR reader that has
    /// counted on a QSBR ref since it went online, or zero (the QSBR flavor
    /// zeroes it whenever the thread goes offline or unregisters).
    @inlinable
    @inline(__always)
    static var callingThreadQSBROnlineArea: UInt { curcu_qsbr_online_counter_area_get() }

    /// Lets the fast path of QSBR refs find the calling thread's area, once
    /// the caller has checked that the thread is online.
    @usableFromInline
    static func rememberCallingThreadOnline() { curcu_qsbr_online_counter_area_set(callingThreadArea) }

    /// The calling thread's area, assigned on first use.
    @usableFromInline
    static var assignedArea: UInt {
        let area = callingThreadArea
        return area != 0 ? area : assignArea()
    }

    /// The counters at `offset` (a byte offset) in `area`.
    @inlinable
    @inline(__always)
    static func counters(in area: UInt, atOffset offset: UInt) -> UnsafeMutablePointer<ThreadCounters> {
        ThreadCounters.at(area, offset: offset)
    }

    /// A free offset, as a byte offset, or nil if all are taken.
    static func allocateOffset() -> UInt? {
        // Fork steps: a child must not inherit the lock held, nor the key's
        // lazy initialisation in progress.
        ForkGuard.excludingFork {
            state.withLock { state -> UInt? in
                if let reused = state.freeOffsets.popLast() { return UInt(reused) * stride }
                guard state.nextOffset < state.offsetLimit else { return nil }
                if state.nextOffset == state.committedOffsets { commitMoreOffsets(&state) }
                defer { state.nextOffset += 1 }
                return UInt(state.nextOffset) * stride
            }
        }
    }

    /// Hands out at most `count` offsets from now on, so that a test can
    /// reach the refs created when none is left without creating millions.
    package static func limitOffsets(to count: Int) {
        state.withLock { $0.offsetLimit = min(count, maximumOffsets) }
    }

    /// Gives back `offset`, zeroing it everywhere. The ref that owned it
    /// is gone, so no thread counts on it.
    static func freeOffset(_ offset: UInt) {
        ForkGuard.excludingFork {
            state.withLock { state in
                _ = takeAll(atOffset: offset, &state)
                state.freeOffsets.append(Int(offset / stride))
            }
        }
    }

    /// The references counted at `offset` by every thread, live or exited,
    /// which are zeroed: the sum of the switch to atomic mode. Only after a
    /// grace period that followed the switch of mode: no thread is still
    /// counting at the offset, and none will until the ref is back in
    /// percpu mode.
    static func collect(_ offset: UInt) -> Int {
        ForkGuard.excludingFork { state.withLock { takeAll(atOffset: offset, &$0) } }
    }

    /// The references counted at `offset`, left in place (for the
    /// refinement mapping): exact while no thread is counting there.
    package static func peek(_ offset: UInt) -> (live: Int, folded: Int) {
        ForkGuard.excludingFork {
            state.withLock { state in
                let inBlocks = offset < CounterBlocks.bytes ? CounterBlocks.peek(atOffset: offset) : (live: 0, folded: 0)
                return (state.areas.reduce(inBlocks.live) { $0 &+ counters(in: $1, atOffset: offset).pointee.net },
                        state.folded[Int(offset / stride)] &+ inBlocks.folded)
            }
        }
    }

    /// Under the lock: sums and zeroes `offset` in every area and in
    /// `folded`, and in the counter blocks if it is one of theirs (QSBR
    /// refs count there with the read-side checks compiled out; the sum
    /// does not depend on which way a count went). Other threads may be
    /// counting at other offsets of the same areas meanwhile; each word has
    /// one writer at a time.
    private static func takeAll(atOffset offset: UInt, _ state: inout State) -> Int {
        let index = Int(offset / stride)
        var sum = offset < CounterBlocks.bytes ? CounterBlocks.takeAll(atOffset: offset) : 0
        sum &+= state.folded[index]
        state.folded[index] = 0
        for area in state.areas {
            sum &+= counters(in: area, atOffset: offset).pointee.takeAll()
        }
        return sum
    }

    /// Makes the next `offsetsPerCommit` offsets usable in every area,
    /// spares included.
    private static func commitMoreOffsets(_ state: inout State) {
        for area in state.areas.union(state.spareAreas) {
            commit(area, from: state.committedOffsets, count: offsetsPerCommit)
        }
        state.committedOffsets += offsetsPerCommit
        state.folded.append(contentsOf: repeatElement(0, count: offsetsPerCommit))
    }

    private static func commit(_ area: UInt, from firstOffset: Int, count: Int) {
        guard count > 0 else { return }
        let status = mprotect(
            UnsafeMutableRawPointer(bitPattern: area + UInt(firstOffset) * stride),
            count * Int(stride), PROT_READ | PROT_WRITE)
        if status != 0 { rcuMisuse("PercpuRef: mprotect of a counter area failed (errno \(errno)): out of memory") }
    }

    private static func assignArea() -> UInt {
        let area = ForkGuard.excludingFork {
            let area = state.withLock { state -> UInt in
                let area = state.spareAreas.popLast() ?? reserveArea(committing: state.committedOffsets)
                state.areas.insert(area)
                return area
            }
            pthread_setspecific(foldAtExit, UnsafeRawPointer(bitPattern: 1))
            return area
        }
        curcu_thread_counter_area_set(area)
        return area
    }

    /// A new area: address space for every possible offset, the first
    /// `committed` of them usable (zero pages until written).
    private static func reserveArea(committing committed: Int) -> UInt {
        let bytes = maximumOffsets * Int(stride)
        guard let start = mmap(nil, bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
              start != MAP_FAILED
        else { rcuMisuse("PercpuRef: cannot reserve a counter area (errno \(errno))") }
        _ = start.bindMemory(to: ThreadCounters.self, capacity: maximumOffsets)
        let area = UInt(bitPattern: start)
        commit(area, from: 0, count: committed)
        return area
    }

    /// The fold: at the calling thread's exit, its counters move to
    /// `folded` and its area, zeroed, to the spares. Under the lock, so
    /// that a switch's sum sees each count exactly once: in the area before
    /// the fold or in `folded` after it. Returns how many offsets it read
    /// (what a thread's exit costs, for tests); a thread that calls it
    /// gets a new area if it counts again.
    @discardableResult
    package static func foldCallingThread() -> Int {
        let area = callingThreadArea
        guard area != 0 else { return 0 }
        curcu_thread_counter_area_set(0)
        curcu_qsbr_online_counter_area_set(0)
        return ForkGuard.excludingFork {
            state.withLock { state in
                var offsetsRead = 0
                for offsets in offsetsThatMayHoldCounts(in: area, below: state.nextOffset) {
                    for index in offsets {
                        state.folded[index] &+= counters(in: area, atOffset: UInt(index) * stride).pointee.net
                    }
                    offsetsRead += offsets.count
                }
                // Zeroes the area (private anonymous pages read as zero
                // once dropped) and gives its memory back until a new
                // thread writes it.
                madvise(UnsafeMutableRawPointer(bitPattern: area), state.committedOffsets * Int(stride), MADV_DONTNEED)
                state.areas.remove(area)
                state.spareAreas.append(area)
                return offsetsRead
            }
        }
    }

    /// The offsets below `end` of `area`, page by page, leaving out pages
    /// that hold only zeros because nothing wrote them since the area was
    /// reserved or last zeroed: pages neither present nor swapped out
    /// (`/proc/self/pagemap`). A page that other threads' switches read is
    /// present too (the zero page) and is read; what is left out is never
    /// read. All of them if the page map cannot be read, or does not show
    /// a page just written as present (an emulated /proc).
    private static func offsetsThatMayHoldCounts(in area: UInt, below end: Int) -> [Range<Int>] {
        let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
        let offsetsPerPage = pageSize / Int(stride)
        let everything = end > 0 ? [0..<end] : []
        // Opened for each fold: a descriptor opened before a fork would
        // show the parent's pages to the child.
        let pageMap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)
        guard pageMap >= 0 else { return everything }
        defer { close(pageMap) }
        let presentOrSwapped: UInt64 = 1 << 63 | 1 << 62
        /// The page map's entries for `count` pages from `address`.
        func entries(from address: UInt, count: Int) -> [UInt64]? {
            var entries = [UInt64](repeating: 0, count: count)
            let bytes = count * MemoryLayout<UInt64>.stride
            let read = entries.withUnsafeMutableBytes {
                pread(pageMap, $0.baseAddress, bytes, off_t(address / UInt(pageSize)) * off_t(MemoryLayout<UInt64>.stride))
            }
            return read == bytes ? entries : nil
        }
        var written = 1
        let writtenIsPresent = withUnsafeMutablePointer(to: &written) { address in
            address.pointee = 2
            return entries(from: UInt(bitPattern: address), count: 1).map { $0[0] & presentOrSwapped != 0 } ?? false
        }
        guard writtenIsPresent,
              let areaEntries = entries(from: area, count: (end + offsetsPerPage - 1) / offsetsPerPage)
        else { return everything }
        return areaEntries.indices.filter { areaEntries[$0] & presentOrSwapped != 0 }.map { page in
            page * offsetsPerPage..<min((page + 1) * offsetsPerPage, end)
        }
    }
}
