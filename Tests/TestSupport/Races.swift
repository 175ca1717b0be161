import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Lets a fixed number of threads leave a point together, within a fraction
/// of a microsecond of each other: what a test needs to make their next
/// steps race. (``Latch`` sleeps between checks, which spreads its waiters
/// over hundreds of microseconds.)
///
/// Waiters spin, and yield the core now and then, so that on a loaded
/// machine they do not keep the threads still to arrive from running.
/// Reusable: each round of `parties` arrivals releases them and starts the
/// next.
public final class SpinBarrier: Sendable {
    private let parties: Int
    private let arrived = Atomic<Int>(0)
    private let round = Atomic<Int>(0)

    public init(parties: Int) {
        precondition(parties > 0, "SpinBarrier needs at least one party")
        self.parties = parties
    }

    /// Returns once all `parties` threads have called it in this round.
    /// Stops the process if they have not within `seconds`: a broken test
    /// must not hang.
    public func arriveAndWait(seconds: Int = 120) {
        // Read before arriving: the round cannot end without this thread.
        let current = round.load(ordering: .acquiring)
        if arrived.wrappingAdd(1, ordering: .acquiringAndReleasing).newValue == parties {
            // Reset before releasing: a thread released into the next
            // round finds the count at zero.
            arrived.store(0, ordering: .relaxed)
            round.store(current &+ 1, ordering: .releasing)
            return
        }
        spinWait(seconds: seconds) { round.load(ordering: .acquiring) != current }
    }
}

/// Busy-waits until `condition` holds: a thread that must react within
/// nanoseconds cannot sleep. Yields the core after every few microseconds
/// of spinning, so that on a loaded machine the thread it waits for gets to
/// run. Stops the process if `condition` does not hold within `seconds`: a
/// broken test must not hang.
public func spinWait(seconds: Int = 120, until condition: () -> Bool) {
    let deadline = ContinuousClock.now + .seconds(seconds)
    var spins = 0
    while !condition() {
        spins &+= 1
        if spins % 4_096 == 0 {
            sched_yield()
            if ContinuousClock.now > deadline {
                fatalError("spinWait: the condition did not hold within \(seconds) s")
            }
        }
    }
}

/// Pins the calling thread to one CPU, CPU `index` modulo the CPUs online,
/// so that threads a test races run on different cores at once, rather
/// than taking turns on one (which a loaded scheduler may make them do for
/// a whole run). Does nothing where the CPU cannot be chosen.
public func pinCurrentThread(toCPU index: Int) {
    // pthread_setaffinity_np is a GNU extension that Swift's Glibc module
    // does not declare.
    typealias SetAffinity = @convention(c) (pthread_t, Int, UnsafePointer<cpu_set_t>) -> Int32
    guard let symbol = dlsym(nil, "pthread_setaffinity_np") else { return }
    let online = max(1, sysconf(Int32(_SC_NPROCESSORS_ONLN)))
    let cpu = index % online
    var set = cpu_set_t()
    withUnsafeMutableBytes(of: &set) { bits in
        let word = cpu / UInt64.bitWidth
        bits.storeBytes(of: UInt64(1) << (cpu % UInt64.bitWidth), toByteOffset: word * 8, as: UInt64.self)
    }
    _ = unsafeBitCast(symbol, to: SetAffinity.self)(pthread_self(), MemoryLayout<cpu_set_t>.size, &set)
}
