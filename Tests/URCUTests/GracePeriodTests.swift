import Dispatch
import Synchronization
import Testing
import URCU
import URCUTesting
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// Grace periods, callbacks and polling, on every flavor with real threads.
@Suite("Grace periods")
struct GracePeriodTests {
    @Test("read sections nest and are visible to isInReadSection", arguments: allFlavors)
    func nesting(flavor: any LiburcuFlavor.Type) {
        @Sendable func check<F: RCUFlavor>(_: F.Type) {
            F.asReaderThread {
                #expect(!F.isInReadSection)
                F.read { _ in
                    #expect(F.isInReadSection)
                    F.read { _ in #expect(F.isInReadSection) }
                    #expect(F.isInReadSection)
                }
                #expect(!F.isInReadSection)
            }
        }
        let thread = JoinableThread { check(flavor) }
        thread.join()
    }

    @Test("synchronize waits for a reader that was inside its section", arguments: allFlavors)
    func synchronizeWaitsForReader(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let entered = Latch(), release = Latch(), left = Latch(), synchronized = Latch()
            let reader = JoinableThread {
                F.asReaderThread {
                    F.read { _ in
                        entered.open()
                        release.wait()
                        left.open()
                    }
                }
            }
            entered.wait()
            let leftFirst = Latch()
            let updater = JoinableThread {
                F.synchronize()
                // The reader must have left before the grace period ended.
                if left.isOpen { leftFirst.open() }
                synchronized.open()
            }
            usleep(50_000)
            #expect(!synchronized.isOpen, "synchronize returned while a reader was still inside")
            release.open()
            #expect(synchronized.wait(), "synchronize did not return after the reader left")
            reader.join()
            updater.join()
            #expect(leftFirst.isOpen, "synchronize returned before the reader left")
        }
        check(flavor)
    }

    @Test("call runs the closure after a grace period and barrier waits for it", arguments: allFlavors)
    func callAfterGracePeriod(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let entered = Latch(), release = Latch(), ran = Latch()
            let reader = JoinableThread {
                F.asReaderThread { F.read { _ in entered.open(); release.wait() } }
            }
            entered.wait()
            F.call { ran.open() }
            usleep(50_000)
            #expect(!ran.isOpen, "callback ran while a pre-existing reader was inside")
            release.open()
            reader.join()
            F.barrier()
            #expect(ran.isOpen, "barrier returned before the callback ran")
        }
        check(flavor)
    }

    @Test("barrier runs every queued closure, from several threads", arguments: allFlavors)
    func barrierRunsEverything(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let counter = Atomic<Int>(0)
            let perThread = 5_000
            runThreads(2) { _ in
                for _ in 0..<perThread { F.call { counter.wrappingAdd(1, ordering: .relaxed) } }
            }
            F.barrier()
            #expect(counter.load(ordering: .relaxed) == 2 * perThread)
        }
        check(flavor)
    }

    @Test("polled grace periods complete only after pre-existing readers leave", arguments: allFlavors)
    func polling(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let entered = Latch(), release = Latch()
            let reader = JoinableThread {
                F.asReaderThread { F.read { _ in entered.open(); release.wait() } }
            }
            entered.wait()
            let cookie = F.startPoll()
            usleep(50_000)
            #expect(!F.poll(cookie), "cookie completed while a pre-existing reader was inside")
            release.open()
            reader.join()
            #expect(eventually { F.poll(cookie) }, "cookie never completed")
            // A completed cookie makes the conditional form free.
            F.synchronize(ifNotCompleted: cookie)
            // synchronize() completes every cookie started before it.
            let second = F.startPoll()
            F.synchronize()
            #expect(F.poll(second))
        }
        check(flavor)
    }

    @Test("async synchronize waits for readers without blocking the caller", arguments: allFlavors)
    func asyncSynchronize(flavor: any LiburcuFlavor.Type) async {
        func check<F: RCUFlavor>(_: F.Type) async {
            let entered = Latch(), release = Latch(), left = Latch()
            let reader = JoinableThread {
                F.asReaderThread { F.read { _ in entered.open(); release.wait(); left.open() } }
            }
            entered.wait()
            let opener = JoinableThread { usleep(30_000); release.open() }
            await F.synchronize()
            #expect(left.isOpen)
            opener.join()
            reader.join()
        }
        await check(flavor)
    }

    @Test("afterGracePeriod hands work to a queue after a grace period", arguments: allFlavors)
    func doubleBounce(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let queue = DispatchQueue(label: "urcu.test.work")
            let entered = Latch(), release = Latch(), ran = Latch(), ranInSection = Latch()
            let reader = JoinableThread {
                F.asReaderThread { F.read { _ in entered.open(); release.wait() } }
            }
            entered.wait()
            F.afterGracePeriod(on: queue) {
                // The work may block: it does not run on the callback thread.
                if F.isInReadSection { ranInSection.open() }
                usleep(1_000)
                ran.open()
            }
            usleep(50_000)
            #expect(!ran.isOpen)
            release.open()
            reader.join()
            #expect(ran.wait(), "work never ran")
            #expect(!ranInSection.isOpen)
        }
        check(flavor)
    }

    @Test("pendingCallbacks counts queued callbacks down to zero", arguments: allFlavors)
    func pendingCallbacks(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let gate = Latch()
            for _ in 0..<10 { F.call { gate.wait() } }
            #expect(F.pendingCallbacks >= 10)
            gate.open()
            F.barrier()
            // Other suites may be queueing on the same flavor; ours are gone.
            #expect(eventually { F.pendingCallbacks < 10 })
        }
        check(flavor)
    }

    @Test("a thread that exits after reading does not stall grace periods", arguments: [
        MembarrierRCU.self, MemoryBarrierRCU.self, BulletproofRCU.self,
    ] as [any LiburcuFlavor.Type])
    func threadExit(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            runThreads(8) { _ in F.read { _ in } }
            let done = Latch()
            let updater = JoinableThread { F.synchronize(); done.open() }
            #expect(done.wait(seconds: 60), "grace period stalled by exited threads")
            updater.join()
        }
        check(flavor)
    }
}

/// Plain storage a callback writes and the test reads without a lock:
/// only the library's ordering makes that read safe.
final class PlainBox: @unchecked Sendable {
    var values = [Int]()
}

extension GracePeriodTests {
    /// `pendingCallbacks == 0` promises that every payload has finished:
    /// what the callbacks wrote is visible to the thread that saw the zero.
    /// x86 orders this on its own; ThreadSanitizer (`make sanitize-thread`)
    /// checks the release/acquire pair that makes it hold on every
    /// architecture, and reports a data race without it. In a process of
    /// its own: the count is process wide, and other suites keep it busy.
    static func pendingZeroPublishesPayloads() -> Bool {
        for _ in 0..<20 {
            let box = PlainBox()
            for value in 0..<50 { MembarrierRCU.call { box.values.append(value) } }
            while MembarrierRCU.pendingCallbacks != 0 { usleep(100) }
            if box.values.count != 50 { return false }
        }
        return true
    }

    @Test("pendingCallbacks reaching zero publishes what the callbacks wrote")
    func pendingZeroPublishesPayloads() async {
        await #expect(processExitsWith: .success) {
            exit(GracePeriodTests.pendingZeroPublishesPayloads() ? 0 : 1)
        }
    }
}

@Suite("Async double bounce")
struct AsyncDoubleBounceTests {
    @Test("afterGracePeriod(on: executor) runs the task after pre-existing readers leave", arguments: allFlavors)
    func executorBounce(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let executor = QueueExecutor()
            let entered = Latch(), release = Latch(), ran = Latch()
            let reader = JoinableThread {
                F.asReaderThread { F.read { _ in entered.open(); release.wait() } }
            }
            let readerEntered = entered.wait()
            #expect(readerEntered)
            let start = monotonicSeconds()
            F.afterGracePeriod(on: executor) { ran.open() }
            usleep(50_000)
            #expect(!ran.isOpen, "ran while a pre-existing reader was inside (after \(monotonicSeconds() - start) s)")
            release.open()
            reader.join()
            #expect(ran.wait(), "never ran")
        }
        check(flavor)
    }
}

@Suite("QSBR registration")
struct QSBRTests {
    @Test("a registered thread that goes offline to block does not stall grace periods")
    func offlineWhileBlocking() {
        let offline = Latch(), release = Latch()
        let states = Atomic<Int>(0)
        let reader = JoinableThread {
            QuiescentStateRCU.registerThread()
            if QuiescentStateRCU.isOnline { states.wrappingAdd(1, ordering: .relaxed) }
            QuiescentStateRCU.whileOffline {
                if !QuiescentStateRCU.isOnline { states.wrappingAdd(1, ordering: .relaxed) }
                offline.open()
                release.wait()
            }
            if QuiescentStateRCU.isOnline { states.wrappingAdd(1, ordering: .relaxed) }
            QuiescentStateRCU.unregisterThread()
        }
        offline.wait()
        let done = Latch()
        let updater = JoinableThread { QuiescentStateRCU.synchronize(); done.open() }
        #expect(done.wait(seconds: 60), "offline QSBR thread stalled the grace period")
        release.open()
        reader.join()
        updater.join()
        #expect(states.load(ordering: .relaxed) == 3, "online, offline, online again")
    }

    @Test("an online thread holds grace periods until it reports a quiescent state")
    func quiescentState() {
        let registered = Latch(), report = Latch(), reported = Latch(), done = Latch()
        let reader = JoinableThread {
            QuiescentStateRCU.registerThread()
            registered.open()
            report.wait()
            QuiescentStateRCU.quiescentState()
            reported.open()
            _ = QuiescentStateRCU.whileOffline { done.wait() }
            QuiescentStateRCU.unregisterThread()
        }
        registered.wait()
        let synchronized = Latch()
        let updater = JoinableThread { QuiescentStateRCU.synchronize(); synchronized.open() }
        usleep(50_000)
        #expect(!synchronized.isOpen, "grace period ended before the online thread was quiescent")
        report.open()
        #expect(synchronized.wait(), "grace period did not end after the quiescent state")
        // The updater may finish before the reader opens `reported`: wait, do not peek.
        #expect(reported.wait(), "the reader never returned from quiescentState()")
        done.open()
        reader.join()
        updater.join()
    }

    @Test("call from an unregistered thread works without registering it")
    func callFromUnregisteredThread() {
        let ran = Latch(), leftRegistered = Latch()
        let caller = JoinableThread {
            QuiescentStateRCU.call { ran.open() }
            if QuiescentStateRCU.isRegistered { leftRegistered.open() }
        }
        caller.join()
        QuiescentStateRCU.barrier()
        #expect(ran.isOpen)
        #expect(!leftRegistered.isOpen)
    }
}
