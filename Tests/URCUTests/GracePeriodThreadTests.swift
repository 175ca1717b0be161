import Dispatch
import Foundation
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// The grace-period thread behind `await synchronize()`, `startPoll()` and
/// `afterGracePeriod`: waiters are batched behind shared grace periods.
/// Readers are threads of their own and every blocking wait runs off the
/// cooperative pool, which the waiting tasks need.
@Suite("Grace-period thread", .serialized)
struct GracePeriodThreadTests {
    // While a reader holds a grace period up, nothing here may need the
    // cooperative pool: other tests' blocking waits for that grace period
    // can hold every pool thread, and the reader would never be released.
    // The scenarios run on threads of their own, their tasks on an
    // executor of their own.

    @Test("10,000 tasks awaiting synchronize() at once are served by a few grace periods", arguments: allFlavors)
    func batching(flavor: any LiburcuFlavor.Type) async {
        @Sendable func check<F: LiburcuFlavor>(_: F.Type) -> (served: Int, gracePeriods: Int) {
            let executor = QueueExecutor(label: "urcu.test.waiters")
            // A reader holds up the grace period in progress while all the
            // waiters arrive.
            let entered = Latch(), release = Latch(), allServed = Latch()
            let reader = JoinableThread { F.asReaderThread { F.read { _ in entered.open(); release.wait() } } }
            entered.wait()
            Task(executorPreference: executor) { await F.synchronize() }
            let queuedBefore = F.waitersQueuedForGracePeriods
            let before = F.gracePeriodsRunForWaiters
            let served = Counter()
            Task(executorPreference: executor) {
                await withTaskGroup(of: Void.self) { group in
                    for _ in 0..<10_000 {
                        group.addTask(executorPreference: executor) {
                            await F.synchronize()
                            served.increment()
                        }
                    }
                }
                allServed.open()
            }
            _ = eventually(seconds: 60) { F.waitersQueuedForGracePeriods - queuedBefore >= 10_000 }
            let lastTicket = F.waitersQueuedForGracePeriods
            release.open()
            reader.join()
            // Counted when the grace period covering every waiter has
            // started: later ones (other tests' waiters, while 10,000
            // tasks resume) are not theirs.
            _ = eventually(seconds: 60) { F.waitersWhoseGracePeriodStarted >= lastTicket }
            let gracePeriods = F.gracePeriodsRunForWaiters - before
            allServed.wait()
            return (served.value, gracePeriods)
        }
        let (served, gracePeriods) = await offPool { check(flavor) }
        #expect(served == 10_000)
        // The one held up ended; the one serving them all has started (one
        // per waiter would be 10,000).
        #expect(gracePeriods >= 1 && gracePeriods <= 3, "\(gracePeriods) grace periods before the one serving 10,000 waiters")
    }

    @Test("a waiter that arrives during a grace period waits for the next one", arguments: allFlavors)
    func lateWaiterWaitsForNextGracePeriod(flavor: any LiburcuFlavor.Type) async {
        @Sendable func check<F: LiburcuFlavor>(_: F.Type) -> (servedEarly: Bool, sawReaderLeave: Bool) {
            let executor = QueueExecutor(label: "urcu.test.waiters")
            // A reader holds up the grace period an early waiter starts; a
            // second reader enters after it started, then a late waiter
            // arrives: the late one must also wait for the second reader.
            let firstEntered = Latch(), releaseFirst = Latch(), secondEntered = Latch(), releaseSecond = Latch()
            let earlyDone = Latch(), lateDone = Latch()
            let secondLeft = Atomic<Bool>(false), lateSawSecondLeave = Atomic<Bool>(false)
            let first = JoinableThread { F.asReaderThread { F.read { _ in firstEntered.open(); releaseFirst.wait() } } }
            firstEntered.wait()
            let earlyTicket = F.waitersQueuedForGracePeriods + 1
            Task(executorPreference: executor) {
                await F.synchronize()
                earlyDone.open()
            }
            // Enter once the grace period covering the early waiter has
            // started (and is waiting for the first reader). If a grace
            // period another test's waiter started just before holds it
            // back, enter after 2 s anyway: the late waiter then shares the
            // early one's grace period, which waits for this reader too,
            // and the check proves less.
            _ = eventually(seconds: 2) { F.waitersWhoseGracePeriodStarted >= earlyTicket }
            usleep(5_000)
            let second = JoinableThread {
                F.asReaderThread {
                    F.read { _ in
                        secondEntered.open()
                        releaseSecond.wait()
                        // Still inside the section: a grace period that
                        // waits for it ends after this store.
                        secondLeft.store(true, ordering: .releasing)
                    }
                }
            }
            secondEntered.wait()
            Task(executorPreference: executor) {
                await F.synchronize()
                lateSawSecondLeave.store(secondLeft.load(ordering: .acquiring), ordering: .relaxed)
                lateDone.open()
            }
            // The first reader leaves: the early waiter's grace period can
            // end, but the late waiter must still wait for the second one.
            usleep(5_000)
            releaseFirst.open()
            let servedEarly = lateDone.wait(seconds: 0.05)
            releaseSecond.open()
            earlyDone.wait()
            lateDone.wait()
            first.join()
            second.join()
            return (servedEarly, lateSawSecondLeave.load(ordering: .relaxed))
        }
        let result = await offPool { check(flavor) }
        #expect(!result.servedEarly, "the late waiter was served by the grace period already in progress")
        #expect(result.sawReaderLeave, "the late waiter returned before the reader it had to wait for left")
    }

    @Test("barrier() waits for afterGracePeriod work handed in before it", arguments: allFlavors)
    func barrierCoversAfterGracePeriod(flavor: any LiburcuFlavor.Type) async {
        func check<F: RCUFlavor>(_: F.Type) async -> Int {
            let queue = DispatchQueue(label: "urcu.test.gp-thread")
            let ran = Counter()
            await offPool {
                for _ in 0..<100 { F.afterGracePeriod(on: queue) { ran.increment() } }
            }
            await F.barrier()
            // Every item has handed its work to the queue: drain it.
            await withCheckedContinuation { done in queue.async { @Sendable in done.resume() } }
            return ran.value
        }
        #expect(await check(flavor) == 100, "barrier() returned before the grace-period work handed in before it")
    }

    @Test("the grace-period thread asks for a short time slice, so that its wake-ups do not wait for busy cores",
          .enabled(if: Self.schedulerReportsCustomSlices, "needs Linux 6.12 or later, and /proc/self/sched's se.slice"))
    func shortTimeSlice() {
        // Starts the thread if no test has yet.
        let cookie = MembarrierRCU.startPoll()
        #expect(eventually(seconds: 30) { MembarrierRCU.poll(cookie) })
        let slices = Self.slicesOfThreads(named: gracePeriodThreadName)
        #expect(!slices.isEmpty, "no thread named \(gracePeriodThreadName)")
        #expect(slices.allSatisfy { $0 == 100_000 }, "their slices (ns): \(slices)")
    }

    /// `se.slice` (nanoseconds) of each of this process's threads named
    /// `name`, from `/proc/self/task/<tid>/sched`.
    static func slicesOfThreads(named name: String) -> [Int] {
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        return tasks.compactMap { tid in
            let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)
            guard comm?.trimmingCharacters(in: .whitespacesAndNewlines) == name else { return nil }
            return slice(inSchedFile: "/proc/self/task/\(tid)/sched")
        }
    }

    static func slice(inSchedFile path: String) -> Int? {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { return nil }
        let line = text.split(separator: "\n").first { $0.hasPrefix("se.slice") }
        return line.flatMap { Int($0.split(separator: ":").last!.trimmingCharacters(in: .whitespaces)) }
    }

    /// Custom slices for the default policy came with Linux 6.12; the
    /// scheduler shows a thread's slice only when built with its debug
    /// files.
    static var schedulerReportsCustomSlices: Bool {
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        let version = release.split(separator: ".").prefix(2).compactMap { Int($0.prefix { $0.isNumber }) }
        let supported = version.count == 2 && (version[0], version[1]) >= (6, 12)
        return supported && slice(inSchedFile: "/proc/self/sched") != nil
    }
}
