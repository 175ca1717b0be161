import PercpuRef
import TestSupport
import Testing
import URCU
import URCUTesting

/// The grace-period domain of the switch races: the test ends each grace
/// period itself, so thousands of switches take a second or so.
typealias SwitchDomain = ManualRCU<SwitchRaceTests>

/// The end of a switch to atomic mode, raced by a thread that holds
/// references taken in percpu mode.
///
/// During the switch the shared count holds the bias; its end replaces the
/// bias by the per-thread sum. Any moment at which the count holds neither
/// hides the references counted per thread: a put that reaches the count
/// then releases early or goes below zero, a get finds it zero, and
/// ``PercpuRef/isZero`` says zero while references are held. The test looks
/// only at what those see while the end of the switch runs, not at how the
/// end of the switch is written, so the order of its steps does not matter
/// to it: only whether a moment without the references exists.
@Suite("PercpuRef switch to atomic mode raced by a reference holder")
struct SwitchRaceTests {
    @Test("a thread holding percpu references sees them counted throughout the end of the switch")
    func holderRacingTheEndOfTheSwitch() async {
        // A get on zero or a put below zero stops the process with a misuse
        // diagnostic (the exit test then fails with SIGILL); what the holder
        // sees otherwise is recorded as an issue.
        await #expect(processExitsWith: .success) {
            SwitchRaceTests.race(rounds: 10_000, referencesHeld: 8)
        }
    }

    /// Kills and reinitialises one ref `rounds` times. Before each kill, a
    /// holder thread takes `referencesHeld` references in percpu mode, on
    /// its own counter. Once the ref is atomic it puts one of them, on the
    /// shared count, and while the end of the switch runs it checks that the
    /// ref is not zero, and takes and drops a reference now and then; then
    /// it puts the rest. Records the first round in which it saw the ref at
    /// zero, or that did not release exactly once.
    static func race(rounds: Int, referencesHeld: Int) {
        let roundStarts = SpinBarrier(parties: 2)
        let taken = SpinBarrier(parties: 2)
        let switchEnds = SpinBarrier(parties: 2)
        let roundDone = SpinBarrier(parties: 2)
        let firstPuts = Counter()
        let switchesEnded = Counter()
        let sawZero = Counter()
        let releases = Counter()
        let ref = PercpuRef<SwitchDomain>(
            options: .allowReinit,
            completingSwitch: { finish in
                let round = switchesEnded.value
                switchEnds.arriveAndWait()
                spinWait { firstPuts.value > round }
                finish()
                switchesEnded.increment()
            },
            release: { releases.increment() })
        // This runs in an exit test's own process: pinning its threads to
        // different cores is harmless, and makes them run at the same time.
        pinCurrentThread(toCPU: 0)
        let holder = JoinableThread {
            pinCurrentThread(toCPU: 1)
            for round in 0..<rounds {
                roundStarts.arriveAndWait()
                ref.get(count: referencesHeld)
                taken.arriveAndWait()
                switchEnds.arriveAndWait()
                // One put on the shared count first: it then holds just the
                // bias, so a moment without the bias and without the sum
                // leaves it at zero, which the checks see.
                ref.put()
                firstPuts.increment()
                var checks = 0
                while switchesEnded.value == round {
                    if ref.isZero { sawZero.increment() }
                    checks &+= 1
                    // A get and a put take as long as a hundred checks: check
                    // far more often, so that few moments go unseen.
                    if checks % 1_024 == 0 {
                        ref.get()
                        ref.put()
                    }
                }
                for _ in 1..<referencesHeld { ref.put() }
                roundDone.arriveAndWait()
            }
        }
        for round in 0..<rounds {
            if round > 0 { ref.reinit() }
            roundStarts.arriveAndWait()
            taken.arriveAndWait()
            // The holder waits outside any read section, so the grace period
            // can end; its callback ends the switch, with the holder.
            ref.kill()
            SwitchDomain.completeGracePeriod()
            roundDone.arriveAndWait()
            if sawZero.value > 0 || releases.value != round + 1 {
                Issue.record("""
                    round \(round): the holder saw the ref at zero \(sawZero.value) times while holding \
                    \(referencesHeld - 1) references (never allowed); release ran \(releases.value - round) \
                    times (once expected)
                    """)
                // The process ends with the test: the holder need not finish.
                return
            }
        }
        holder.join()
    }

    // Under ThreadSanitizer every atomic access is a call into its runtime:
    // stepping through them would take many times longer.
    #if arch(x86_64) && canImport(Glibc) && !ThreadSanitizerAnnotations
    /// The race above finds a moment without the references only if the
    /// holder looks at that very moment, which for two adds in a row is a
    /// few nanoseconds. Here the end of the switch runs one instruction at a
    /// time, and the ref is looked at after every one.
    @Test("the ref is not zero after any instruction of the end of the switch, while references are held")
    func everyInstructionOfTheEndOfTheSwitch() async {
        await #expect(processExitsWith: .success) {
            SwitchRaceTests.stepThroughTheEndOfTheSwitch(referencesHeld: 8)
        }
    }

    /// This thread takes `referencesHeld` references in percpu mode, on its
    /// own counter, kills the ref and puts one of them on the shared count,
    /// which then holds just the bias: a moment without the bias and without
    /// the sum leaves it at zero. The end of the switch then runs one
    /// instruction at a time.
    static func stepThroughTheEndOfTheSwitch(referencesHeld: Int) {
        let releases = Counter()
        let ref = PercpuRef<SwitchDomain> { releases.increment() }
        ref.get(count: referencesHeld)
        ref.kill()
        ref.put()
        SwitchDomain.startGracePeriod()
        SwitchDomain.endGracePeriod()
        let ready = SwitchDomain.snapshot.ready
        guard ready.count == 1 else {
            Issue.record("expected the end of the switch alone ready to run, found \(ready.count) callbacks")
            return
        }
        let zeroAfter = stepInstructions(
            of: { SwitchDomain.runReadyCallback(ready[0]) }, interleavingWhen: { _ in ref.isZero }, {})
        if let zeroAfter {
            Issue.record("""
                the ref was zero after instruction \(zeroAfter) of the end of the switch, with \
                \(referencesHeld - 1) references held
                """)
        }
        for _ in 1..<referencesHeld { ref.put() }
        #expect(releases.value == 1, "release ran \(releases.value) times (once expected)")
    }
    #endif
}
