import TestSupport
import Testing
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
}

