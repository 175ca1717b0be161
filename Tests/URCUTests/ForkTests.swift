import Synchronization
import TestSupport
import Testing
import PercpuRef
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// fork() with readers and callbacks in flight. Each test runs in a child
/// process of its own (an exit test), which then forks again.
@Suite("fork()")
struct ForkTests {
    /// The scenario, run in the exit test's process: memb readers between
    /// sections and a bp reader inside one when the process forks, memb
    /// callbacks queued just before. Both sides must then run every
    /// queued callback and complete new grace periods. Returns whether all
    /// of that held in the parent and in the child (from its exit status).
    static func forkWithReadersAndCallbacks() -> Bool {
        RCUStallMonitor.threshold = nil
        let stop = Latch(), quiet = Latch(), resume = Latch()
        let membReaders = (0..<2).map { index in
            JoinableThread(name: "memb-reader-\(index)") {
                var sections = 0
                while !stop.isOpen {
                    MembarrierRCU.read { _ in sections += 1 }
                    // Between sections while the test forks (liburcu's rule
                    // for memb: no other thread inside a section).
                    if quiet.isOpen && !resume.isOpen { resume.wait() }
                }
            }
        }
        let ran = Counter()
        let queued = 20_000
        // bp callbacks first, all run: the fork waits for each callback
        // thread's batch, grace period included, and the bp reader below
        // would hold that grace period up until after the fork.
        for _ in 0..<queued / 2 { BulletproofRCU.call { ran.increment() } }
        BulletproofRCU.barrier()
        let bpInside = Latch()
        let bpReader = JoinableThread(name: "bp-reader") {
            // Inside a bp section across the fork: allowed for bp.
            BulletproofRCU.read { _ in bpInside.open(); resume.wait() }
        }
        bpInside.wait()
        // memb callbacks in flight across the fork.
        for _ in 0..<queued / 2 { MembarrierRCU.call { ran.increment() } }
        quiet.open()
        usleep(10_000)
        let child = forkProcess()
        if child == 0 {
            // The child: only this thread exists. Queued callbacks run on
            // new callback threads; grace periods complete; new callbacks run.
            MembarrierRCU.synchronize()
            BulletproofRCU.synchronize()
            let childRan = Counter()
            MembarrierRCU.call { childRan.increment() }
            BulletproofRCU.call { childRan.increment() }
            MembarrierRCU.barrier()
            BulletproofRCU.barrier()
            _exit(ran.value == queued && childRan.value == 2 ? 0 : 1)
        }
        guard child > 0 else { return false }
        resume.open()
        stop.open()
        membReaders.forEach { $0.join() }
        bpReader.join()
        MembarrierRCU.synchronize()
        MembarrierRCU.barrier()
        BulletproofRCU.barrier()
        let parentOK = ran.value == queued
        // The child must finish on its own; a hang there fails the test.
        var status: Int32 = 0
        let exited = eventually(seconds: 60) { waitpid(child, &status, WNOHANG) == child }
        if !exited { kill(child, SIGKILL) }
        let childOK = exited && (status & 0x7F) == 0 && ((status >> 8) & 0xFF) == 0
        return parentOK && childOK
    }

    @Test("parent and child keep working: queued callbacks run on both sides, new grace periods complete")
    func bothSidesWork() async {
        await #expect(processExitsWith: .success) {
            exit(ForkTests.forkWithReadersAndCallbacks() ? 0 : 1)
        }
    }

    @Test("a memb reader inside its section at fork time is named in the child")
    func readerInsideSectionIsReported() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let inside = Latch(), release = Latch()
            let reader = JoinableThread(name: "stuck-reader") {
                MembarrierRCU.read { _ in inside.open(); release.wait() }
            }
            inside.wait()
            let child = forkProcess()
            if child == 0 { _exit(0) }  // Not reached: the child stops first.
            var status: Int32 = 0
            waitpid(child, &status, 0)
            release.open()
            reader.join()
            // The child must have died of the diagnostic, not exited.
            exit((status & 0x7F) != 0 ? 0 : 1)
        }
        expectDiagnostic(result, "forkProcess() while thread")
        let stderr = standardError(of: result)
        #expect(stderr.contains("\"stuck-reader\" was inside a read section of memb"), "stderr was: \(stderr)")
    }

    /// Waits up to `seconds` for `child` to exit; kills it if it has not.
    /// Returns whether it exited with status 0.
    static func childSucceeded(_ child: pid_t, within seconds: Double) -> Bool {
        var status: Int32 = 0
        let exited = eventually(seconds: seconds) { waitpid(child, &status, WNOHANG) == child }
        if !exited {
            kill(child, SIGKILL)
            waitpid(child, &status, 0)
            return false
        }
        return status == 0
    }

    /// What a child does to show RCU works in it: a new thread registers
    /// with memb and QSBR (liburcu's registry lock, the package's reader
    /// registry) and reads, and counts on a PercpuRef (taking a counter
    /// area and folding it at its exit, under PercpuRef's area lock, which
    /// the count then reads); grace periods complete.
    static func childWorks() -> Never {
        let ref = PercpuRef<MembarrierRCU> {}
        JoinableThread {
            MembarrierRCU.read { _ in }
            ref.get(count: 2)
            ref.put()
            QuiescentStateRCU.registerThread()
            QuiescentStateRCU.read { _ in }
            QuiescentStateRCU.unregisterThread()
        }.join()
        MembarrierRCU.synchronize()
        QuiescentStateRCU.synchronize()
        _exit(ref.abstractState.count == 2 ? 0 : 1)
    }

    /// A thread is parked halfway through a registration step
    /// (`registering`) or an unregistration step at its exit, when another
    /// thread forks. The fork must wait for the step: the
    /// child checks that its copy of the parked thread was not inside it,
    /// then that RCU works. Returns whether the child succeeded.
    static func forkWhileParked(registering: Bool) -> Bool {
        RCUStallMonitor.threshold = nil
        let parked = Latch(), release = Latch()
        let parkOnce = Atomic<Bool>(true)
        let insideStep = Atomic<Bool>(false)
        ReaderRegistry.setRegistrationHook { adding in
            guard adding == registering, parkOnce.exchange(false, ordering: .relaxed) else { return }
            insideStep.store(true, ordering: .relaxed)
            parked.open()
            release.wait()
            insideStep.store(false, ordering: .relaxed)
        }
        // Registers on its first section; unregisters as it exits.
        let stepper = JoinableThread { MembarrierRCU.read { _ in } }
        parked.wait()
        // The fork must wait for the parked step: let it go a little later.
        let releaser = JoinableThread { usleep(100_000); release.open() }
        let child = forkProcess()
        if child == 0 {
            // A fork in the middle of the step would leave the child with a
            // registration liburcu has and the package does not (or the
            // reverse), or with a lock held by a thread it does not have.
            if insideStep.load(ordering: .relaxed) { _exit(2) }
            childWorks()
        }
        releaser.join()
        stepper.join()
        return child > 0 && childSucceeded(child, within: 20)
    }

    @Test("a thread parked inside registration when another thread forks: the child works")
    func forkDuringRegistration() async {
        await #expect(processExitsWith: .success) { exit(ForkTests.forkWhileParked(registering: true) ? 0 : 1) }
    }

    @Test("a thread parked inside unregistration at its exit when another thread forks: the child works")
    func forkDuringUnregistration() async {
        await #expect(processExitsWith: .success) { exit(ForkTests.forkWhileParked(registering: false) ? 0 : 1) }
    }

    /// Forks `forks` times while threads keep registering and unregistering
    /// (short-lived memb and mb threads, and short-lived threads taking a
    /// PercpuRef counter area, folded at their exit); each child starts a reader thread and
    /// completes grace periods. Returns how many children hung or failed.
    /// The churning threads register without entering a read section
    /// (`withRegisteredThread`): a fork while another thread is inside a
    /// memb section is a misuse of its own, diagnosed in the child.
    static func forkStorm(forks: Int) -> Int {
        RCUStallMonitor.threshold = nil
        let stop = Latch()
        let ref = PercpuRef<BulletproofRCU> {}
        let churners = [
            JoinableThread { while !stop.isOpen { JoinableThread { MembarrierRCU.withRegisteredThread {} }.join() } },
            JoinableThread { while !stop.isOpen { JoinableThread { MemoryBarrierRCU.withRegisteredThread {} }.join() } },
            JoinableThread { while !stop.isOpen { JoinableThread { ref.get(); ref.put() }.join() } },
        ]
        var failed = 0
        for _ in 0..<forks {
            let child = forkProcess()
            if child == 0 {
                // A hung child must not outlive the test.
                alarm(10)
                childWorks()
            }
            if child < 0 || !childSucceeded(child, within: 15) { failed += 1 }
        }
        stop.open()
        churners.forEach { $0.join() }
        return failed
    }

    /// 30,000 by default; `URCU_FORK_STORM` sets it for a shorter run.
    static var stormForks: Int {
        getenv("URCU_FORK_STORM").flatMap { Int(String(cString: $0)) } ?? 30_000
    }

    @Test("a fork storm with threads registering and unregistering: no child hangs")
    func forkStorm() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            let forks = ForkTests.stormForks
            let failed = ForkTests.forkStorm(forks: forks)
            writeStandardError("fork storm: \(forks) forks, \(failed) children hung or failed\n")
            exit(failed == 0 ? 0 : 1)
        }
        print(standardError(of: result), terminator: "")
    }
}
