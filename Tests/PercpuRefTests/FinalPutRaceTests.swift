@testable import PercpuRef
import TestSupport
import Testing
import URCU
import URCUTesting

/// Threads that take an atomic ref to zero together.
///
/// Only the put that takes the count to zero may release, and only the
/// value its own subtraction returns can say which put that was: a put
/// that reads the count again afterwards may find another thread's
/// subtraction there too, and release a second time (a put that misjudges
/// the other way releases none).
@Suite("PercpuRef final puts crossing zero together")
struct FinalPutRaceTests {
    /// How the last references go.
    enum Crossing: String, Codable, Sendable, CaseIterable {
        /// Each thread puts one reference of a killed ref.
        case put
        /// Each thread puts several references of a killed ref in one
        /// `put(count:)`.
        case putMany
        /// One thread kills the ref, whose own put crosses zero with the
        /// others' puts.
        case kill

        var referencesEach: Int { self == .putMany ? 3 : 1 }

        /// Takes an atomic ref that holds one reference to one reference
        /// per crossing thread (`referencesEach` each).
        func prepare(_ ref: PercpuRef<MembarrierRCU>, threads: Int) {
            switch self {
            case .put, .putMany:
                ref.get(count: threads * referencesEach)
                ref.kill()
            case .kill:
                ref.get(count: threads - 1)
            }
        }

        /// Drops the references of crossing thread `thread`.
        func cross(_ ref: PercpuRef<MembarrierRCU>, thread: Int) {
            if self == .kill && thread == 0 {
                ref.kill()
            } else {
                ref.put(count: referencesEach)
            }
        }
    }

    @Test("threads crossing zero together release exactly once", arguments: Crossing.allCases)
    func crossingZero(crossing: Crossing) async {
        // A release that runs twice or not at all is recorded as an issue;
        // a misuse diagnostic (a put below zero) fails the exit test.
        await #expect(processExitsWith: .success) { [crossing] in
            FinalPutRaceTests.race(crossing, threads: 2, rounds: 5_000)
        }
    }

    /// Brings one atomic ref to zero `rounds` times, from `threads` threads
    /// released together by a barrier, and reinitialises it each time.
    /// Records the first round that does not release exactly once.
    static func race(_ crossing: Crossing, threads: Int, rounds: Int) {
        let releases = Counter()
        // Atomic from the start, and again after each reinit: no grace
        // period anywhere.
        let ref = PercpuRef<MembarrierRCU>(options: .startAtomic) { releases.increment() }
        let go = SpinBarrier(parties: threads)
        let roundDone = SpinBarrier(parties: threads)
        // This runs in an exit test's own process: pinning its threads to
        // different cores is harmless, and makes them cross at once.
        pinCurrentThread(toCPU: 0)
        let others = (1..<threads).map { thread in
            JoinableThread {
                pinCurrentThread(toCPU: thread)
                for _ in 0..<rounds {
                    go.arriveAndWait()
                    crossing.cross(ref, thread: thread)
                    roundDone.arriveAndWait()
                }
            }
        }
        for round in 0..<rounds {
            if round > 0 { ref.reinit() }
            crossing.prepare(ref, threads: threads)
            go.arriveAndWait()
            crossing.cross(ref, thread: 0)
            roundDone.arriveAndWait()
            if releases.value != round + 1 {
                Issue.record("round \(round): release ran \(releases.value - round) times (once expected)")
                // The process ends with the test: the others need not finish.
                return
            }
        }
        others.forEach { $0.join() }
    }

    // Under ThreadSanitizer every atomic access is a call into its runtime,
    // which widens these races for the test above, and would make stepping
    // through them many times longer.
    #if arch(x86_64) && canImport(Glibc) && !ThreadSanitizerAnnotations
    /// The races above are an instruction or two wide: threads on real
    /// cores rarely hit them even in thousands of rounds (a put that reads
    /// the count again right after its subtraction passes the test above
    /// most of the time). Here the schedule is forced, at every point
    /// around the subtraction.
    @Test("the other thread's put between any two instructions around this thread's subtraction: one release",
          arguments: Crossing.allCases)
    func crossingZeroAtEveryInstruction(crossing: Crossing) async {
        await #expect(processExitsWith: .success) { [crossing] in
            // The kill ends with a put: the instructions before that put's
            // subtraction are swept with `.put`, without first stepping
            // through the kill's own (which makes each attempt 4 times
            // longer).
            FinalPutRaceTests.interleaveEverywhere(
                crossing, instructionsBefore: crossing == .kill ? 0 : 50, instructionsAfter: 10)
        }
    }

    /// Two threads cross zero, each attempt on a fresh ref: this one a
    /// single instruction at a time, the other between two of its
    /// instructions, after each of the `instructionsBefore` instructions
    /// that lead to this crossing's first change of the count, and of the
    /// `instructionsAfter` that follow it. Records the first point at which
    /// release does not run exactly once.
    static func interleaveEverywhere(_ crossing: Crossing, instructionsBefore: Int, instructionsAfter: Int) {
        let preparedCount = 2 * crossing.referencesEach
        // A first attempt warms the paths up (see stepInstructions); the
        // second finds where the count first changes.
        let found = steppedCrossings(crossing, attempts: 2) { attempt, ref, _ in
            attempt == 1 && ref.count.load(ordering: .relaxed) != preparedCount
        }
        guard let subtraction = found[1].interleavedAfter else {
            Issue.record("the crossing never changed the count")
            return
        }
        let points = Array(max(1, subtraction - instructionsBefore)...(subtraction + instructionsAfter))
        let results = steppedCrossings(crossing, attempts: points.count) { attempt, _, steps in
            steps == points[attempt]
        }
        for (point, result) in zip(points, results) where result.interleavedAfter != point || result.releases != 1 {
            Issue.record(result.interleavedAfter != point
                ? "the crossing ended before instruction \(point) (the count changes at \(subtraction))"
                : """
                    the other put after instruction \(point) (the count changes at \(subtraction)): \
                    release ran \(result.releases) times (once expected)
                    """)
            return
        }
    }

    /// Crosses zero on `attempts` fresh refs, two threads each time: this
    /// one stepped, and another that crosses when `shouldInterleave` (given
    /// the attempt, the ref and the instructions stepped so far) first says
    /// so, or after this one if it never does. Returns, per attempt, where
    /// the other crossed and how many times release ran.
    static func steppedCrossings(
        _ crossing: Crossing, attempts: Int,
        interleavingWhen shouldInterleave: (Int, PercpuRef<MembarrierRCU>, Int) -> Bool
    ) -> [(interleavedAfter: Int?, releases: Int)] {
        let releases = (0..<attempts).map { _ in Counter() }
        let refs = releases.map { releases in
            let ref = PercpuRef<MembarrierRCU>(options: .startAtomic) { releases.increment() }
            crossing.prepare(ref, threads: 2)
            return ref
        }
        let othersTurns = (0..<attempts).map { _ in Latch() }
        let othersCrossings = (0..<attempts).map { _ in Latch() }
        // It sleeps until its turn, leaving the cores to the stepping; its
        // turn comes in a signal handler of the stepped thread, which spins
        // until it has crossed.
        let other = JoinableThread {
            for (attempt, ref) in refs.enumerated() {
                othersTurns[attempt].wait()
                crossing.cross(ref, thread: 1)
                othersCrossings[attempt].open()
            }
        }
        let results = refs.indices.map { attempt in
            let letTheOtherCross = {
                othersTurns[attempt].open()
                spinWait { othersCrossings[attempt].isOpen }
            }
            let interleavedAfter = stepInstructions(
                of: { crossing.cross(refs[attempt], thread: 0) },
                interleavingWhen: { shouldInterleave(attempt, refs[attempt], $0) },
                letTheOtherCross)
            if interleavedAfter == nil { letTheOtherCross() }
            return (interleavedAfter, releases[attempt].value)
        }
        other.join()
        return results
    }
    #endif
}
