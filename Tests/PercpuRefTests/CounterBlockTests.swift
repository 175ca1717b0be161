@testable import PercpuRef
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// The counter blocks (``CounterBlocks``): with QSBR's read-side checks
/// compiled out, a QSBR ref counts in the calling thread's block with no
/// check that the block is known, so every thread that can count must have
/// registered it first, and its counts must survive the thread.
@Suite("PercpuRef counter blocks")
struct CounterBlockTests {
    /// Every way a thread becomes able to count on a QSBR ref registers its
    /// block first; a thread that did none of them has not.
    @Test func everyThreadThatCanCountHasItsBlockRegistered() {
        let registered = Lock<[String: Bool]>([:])
        JoinableThread {
            registered.withLock { $0["a thread that did nothing"] = CounterBlocks.isCallingThreadRegistered }
        }.join()
        JoinableThread {
            QuiescentStateRCU.registerThread()
            registered.withLock { $0["registerThread()"] = CounterBlocks.isCallingThreadRegistered }
            QuiescentStateRCU.unregisterThread()
        }.join()
        JoinableThread {
            QuiescentStateRCU.withRegisteredThread {
                registered.withLock { $0["withRegisteredThread"] = CounterBlocks.isCallingThreadRegistered }
            }
        }.join()
        // Callbacks run on liburcu's call_rcu threads, which registered
        // with QSBR themselves; each case on a new one, which nothing ran
        // on before.
        JoinableThread {
            let worker = try! CallbackWorker<QuiescentStateRCU>()
            QuiescentStateRCU.withCallbackWorker(worker) {
                QuiescentStateRCU.call {
                    registered.withLock { $0["a callback"] = CounterBlocks.isCallingThreadRegistered }
                }
            }
            QuiescentStateRCU.barrier()
            worker.shutdown()
        }.join()
        JoinableThread {
            final class Probe {
                let atDeinit: @Sendable () -> Void
                init(atDeinit: @escaping @Sendable () -> Void) { self.atDeinit = atDeinit }
                deinit { atDeinit() }
            }
            let worker = try! CallbackWorker<QuiescentStateRCU>()
            QuiescentStateRCU.withCallbackWorker(worker) {
                QuiescentStateRCU.retire(Unmanaged.passRetained(Probe {
                    registered.withLock { $0["a retired object's deinit"] = CounterBlocks.isCallingThreadRegistered }
                }))
            }
            QuiescentStateRCU.barrier()
            worker.shutdown()
        }.join()
        #expect(registered.withLock { $0 } == [
            "a thread that did nothing": false,
            "registerThread()": true,
            "withRegisteredThread": true,
            "a callback": true,
            "a retired object's deinit": true,
        ])
    }

    /// Each in a process of its own, so that its ref's offset is the first
    /// (in the block) and no other test's ref shares it. A failed check
    /// ends the process with its message on standard error.
    @Test(arguments: [InAProcessOfItsOwn.countsSurviveTheThreadThatMadeThem, .theSwitchSumsLiveThreadsBlocks])
    func inAProcessOfItsOwn(_ scenario: InAProcessOfItsOwn) async {
        await Self.run(scenario)
    }

    /// The scenarios that fork, apart: the ThreadSanitizer pass skips them
    /// (TSan does not support a child that starts threads).
    @Test(arguments: [InAProcessOfItsOwn.aForkedChildFoldsTheOtherThreadsBlocks, .aForkedChildFoldsBeforeItsNewThreadsStart])
    func forkingInAProcessOfItsOwn(_ scenario: InAProcessOfItsOwn) async {
        await Self.run(scenario)
    }

    private static func run(_ scenario: InAProcessOfItsOwn) async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) { [scenario] in
            onThread {
                let releases = Atomic<Int>(0)
                let ref = PercpuRef<QuiescentStateRCU> { releases.wrappingAdd(1, ordering: .relaxed) }
                let offset = ref.offset!
                require(offset < CounterBlocks.bytes, "the first ref's offset \(offset) is not in the block")
                scenario.run(ref, offset: offset) { releases.load(ordering: .relaxed) }
            }
        }
        #expect(standardError(of: result) == "")
    }

    enum InAProcessOfItsOwn: String, Codable, Sendable {
        /// A thread's counts stay in the ref after the thread exits: its
        /// exit moves them out of its block, whose memory the next thread's
        /// static TLS takes, zeroed.
        case countsSurviveTheThreadThatMadeThem
        /// The switch to atomic mode sums the blocks of live threads with
        /// their areas, and leaves them zero.
        case theSwitchSumsLiveThreadsBlocks
        /// In the child of a fork, the other threads' blocks are folded:
        /// the child's new threads may get their stacks.
        case aForkedChildFoldsTheOtherThreadsBlocks
        /// ... before the child starts threads of its own: liburcu starts
        /// a new call_rcu thread in the child, which may get the old one's
        /// stack, and its block, zeroed.
        case aForkedChildFoldsBeforeItsNewThreadsStart

        func run(_ ref: PercpuRef<QuiescentStateRCU>, offset: UInt, releases: @escaping @Sendable () -> Int) {
            switch self {
            case .countsSurviveTheThreadThatMadeThem:
                onThread {
                    QuiescentStateRCU.registerThread()
                    ref.countInCallingThreadBlock(3, offset: offset)
                    ref.countInCallingThreadBlock(-1, offset: offset)
                    QuiescentStateRCU.unregisterThread()
                }
                // A thread that likely reuses the stack, and with it the block.
                onThread { QuiescentStateRCU.withRegisteredThread {} }
                let (live, folded) = CounterBlocks.peek(atOffset: offset)
                require(live == 0 && folded == 2, "after the exit: \(live) live, \(folded) folded; expected 0 and 2")
                require(ref.abstractState.count == 3, "count \(ref.abstractState.count), expected 3")
                QuiescentStateRCU.withRegisteredThread {
                    ref.kill()
                    ref.put(count: 2)
                }
                // The switch kill() starts ends in a callback.
                QuiescentStateRCU.barrier()
                require(releases() == 1, "released \(releases()) times")
            case .theSwitchSumsLiveThreadsBlocks:
                let thread = ParkedCounter(ref, offset: offset, counting: 2)
                ref.switchToAtomicSync()
                let (live, folded) = CounterBlocks.peek(atOffset: offset)
                require(live == 0 && folded == 0, "after the switch: \(live) live, \(folded) folded")
                require(ref.abstractState.count == 3, "count \(ref.abstractState.count), expected 3")
                thread.finish()
            case .aForkedChildFoldsTheOtherThreadsBlocks:
                let thread = ParkedCounter(ref, offset: offset, counting: 1)
                let pid = forkProcess()
                if pid == 0 {
                    let (live, folded) = CounterBlocks.peek(atOffset: offset)
                    require(live == 0 && folded == 1, "in the child: \(live) live, \(folded) folded; expected 0 and 1")
                    require(ref.abstractState.count == 2, "count in the child \(ref.abstractState.count), expected 2")
                    // Without exit's handlers: LeakSanitizer's would report
                    // the objects of the threads the child does not have.
                    _exit(0)
                }
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                require(status == 0, "the child failed (status \(status))")
                let (live, folded) = CounterBlocks.peek(atOffset: offset)
                require(live == 1 && folded == 0, "in the parent: \(live) live, \(folded) folded; expected 1 and 0")
                thread.finish()
            case .aForkedChildFoldsBeforeItsNewThreadsStart:
                // A count by liburcu's call_rcu thread, in its block.
                QuiescentStateRCU.call { ref.countInCallingThreadBlock(1, offset: offset) }
                QuiescentStateRCU.barrier()
                let pid = forkProcess()
                if pid == 0 {
                    // The child's call_rcu thread runs a callback (and
                    // registers its block) before this looks.
                    QuiescentStateRCU.call {}
                    QuiescentStateRCU.barrier()
                    let (live, folded) = CounterBlocks.peek(atOffset: offset)
                    require(live == 0 && folded == 1, "in the child: \(live) live, \(folded) folded; expected 0 and 1")
                    _exit(0)
                }
                var status: Int32 = 0
                waitpid(pid, &status, 0)
                require(status == 0, "the child failed (status \(status))")
            }
        }
    }
}

/// A QSBR thread that has counted `count` in its block and waits, alive
/// and offline (a fork may happen meanwhile), until ``finish()``.
private final class ParkedCounter: Sendable {
    private let counted = Latch(), finishing = Latch()
    private let thread: JoinableThread

    init(_ ref: PercpuRef<QuiescentStateRCU>, offset: UInt, counting count: Int) {
        let (counted, finishing) = (self.counted, self.finishing)
        thread = JoinableThread {
            QuiescentStateRCU.registerThread()
            ref.countInCallingThreadBlock(count, offset: offset)
            QuiescentStateRCU.threadOffline()
            counted.open()
            finishing.wait()
            QuiescentStateRCU.threadOnline()
            QuiescentStateRCU.unregisterThread()
        }
        counted.wait()
    }

    func finish() {
        finishing.open()
        thread.join()
    }
}

/// Runs `body` on a thread of its own and waits for it: an exit test's
/// body is async, and these block.
private func onThread(_ body: @escaping @Sendable () -> Void) {
    JoinableThread(body).join()
}

/// Ends an exit test's process with `message` on standard error unless
/// `condition` holds. With status 0: the test expects success and then an
/// empty standard error, which shows the message (a failed exit status
/// would not).
private func require(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        let line = message() + "\n"
        _ = line.withCString { write(2, $0, strlen($0)) }
        _exit(0)
    }
}
