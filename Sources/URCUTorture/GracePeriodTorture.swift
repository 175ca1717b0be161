import Dispatch
import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// liburcu's rcutorture idea on the Swift API: readers measure the age of
/// what they read in grace periods.
///
/// An updater replaces the published element, marks the old one removed
/// (pipe count 1), and after each later grace period increments the pipe
/// count of every element it removed. A reader that sees a pipe count above
/// 1 inside one read section has watched a grace period end while it was
/// still reading: a grace period that did not wait for it. Updaters rotate
/// through five ways of waiting for a grace period (``Mechanism``), so each
/// one is checked.
///
/// Like liburcu's rcutorture, a run is one cell of a matrix: a flavor, a
/// ``Mode`` (how many threads read and update, and how hard) and a
/// ``CallbackWorkers`` configuration (which callback threads run the
/// callbacks the updaters queue). The pipe-count check runs in every cell.
public enum GracePeriodTorture {
    /// How many threads read and update, and how hard: liburcu's rcutorture
    /// modes, each with the pipe-count check (liburcu checks it in `stress`
    /// only; its `perf` modes only count).
    public enum Mode: String, CaseIterable, Sendable {
        /// liburcu's `perf`: `readers` reader threads and one updater that
        /// replaces the element and waits for a grace period, back to back.
        case readHeavy = "read-heavy"
        /// liburcu's `uperf` (every thread updates, back to back), keeping one
        /// reader for the check: one reader thread and `readers + 1` updaters,
        /// each replacing the element and waiting for a grace period, back to
        /// back, so grace periods of all mechanisms overlap.
        case updateHeavy = "update-heavy"
        /// liburcu's `stress`: `readers` reader threads that nest a second
        /// section inside each section, QSBR readers going offline every 4096
        /// reads to wait for a grace period themselves; one updater back to
        /// back; and 5 threads that only wait for grace periods, 1 ms apart.
        /// liburcu's five call `synchronize_rcu`; here they rotate through
        /// the mechanisms too, so that their callback workers take part.
        case stress
    }

    /// Which callback threads run the callbacks the updaters queue: liburcu's
    /// rcutorture `callrcu_global`, `callrcu_percpu` and `callrcu_perthread`.
    public enum CallbackWorkers: String, CaseIterable, Sendable {
        /// The flavor's default callback thread.
        case global
        /// One worker per CPU (``LiburcuFlavor/createPerCPUCallbackWorkers(realtime:)``),
        /// created for the cell and removed after it. They are process-wide:
        /// the cell reports a problem if the flavor already had some, and
        /// nothing else may create or remove them while it runs (the tests
        /// run these cells in a child process).
        case perCPU = "per-cpu"
        /// A ``CallbackWorker`` for each updating thread, installed with
        /// ``LiburcuFlavor/withCallbackWorker(_:_:)`` and shut down after the
        /// cell. (The async synchronize queues its callback from its task's
        /// thread, so it uses the default worker.)
        case perThread = "per-thread"
    }

    /// The ways an updater waits for a grace period, in the order it rotates
    /// through them.
    public enum Mechanism: String, CaseIterable, Sendable {
        case synchronize
        /// `call`, waiting until the callback has run.
        case call
        /// `startPoll`, then `poll` until it completes.
        case poll
        /// `afterGracePeriod(on:)`, waiting until the work ran on the queue.
        case doubleBounce = "double bounce"
        /// `await synchronize()`, from a task on an executor of the updater's
        /// own: a task on the cooperative pool would wait for as long as
        /// other code blocks the pool's few threads.
        case asyncSynchronize = "async synchronize"
    }

    /// How the updaters wait for grace periods.
    public enum Waiting: Sendable {
        /// Every mechanism of the library, in rotation.
        case real
        /// No waiting at all: deliberately broken updaters, used to show
        /// that the readers' check catches a missing grace period.
        case skipped
    }

    /// How long a cell runs: at least `seconds`, then until the readers have
    /// made `minimumReads` reads and every mechanism has completed
    /// `gracePeriodsPerMechanism` grace periods, but never past `timeLimit`.
    /// A cell also ends at its first error.
    ///
    /// The counts make a run on a loaded machine longer instead of thinner:
    /// a check on them does not depend on the machine being idle.
    public struct Goal: Sendable {
        public var seconds: Double
        public var minimumReads: Int
        public var gracePeriodsPerMechanism: Int
        public var timeLimit: Double

        /// - Parameter timeLimit: defaults to `10 * seconds + 10`.
        public init(seconds: Double, minimumReads: Int = 1, gracePeriodsPerMechanism: Int = 1, timeLimit: Double? = nil) {
            self.seconds = seconds
            self.minimumReads = minimumReads
            self.gracePeriodsPerMechanism = gracePeriodsPerMechanism
            self.timeLimit = timeLimit ?? 10 * seconds + 10
        }
    }

    /// The threads of a cell, by role.
    public struct Threads: Sendable {
        public var readers: Int
        /// Threads that replace the element and wait for grace periods.
        public var updaters: Int
        /// Threads that only wait for grace periods (``Mode/stress``).
        public var waiters: Int
    }

    /// The threads `mode` runs, for `readers` as given to ``run(_:mode:callbackWorkers:goal:readers:waiting:progress:)``.
    public static func threads(_ mode: Mode, readers: Int) -> Threads {
        switch mode {
        case .readHeavy: Threads(readers: readers, updaters: 1, waiters: 0)
        case .updateHeavy: Threads(readers: 1, updaters: readers + 1, waiters: 0)
        case .stress: Threads(readers: readers, updaters: 1, waiters: stressWaiters)
        }
    }

    /// A cell's name: "memb read-heavy per-cpu".
    public static func cellName(flavor: String, mode: Mode, callbackWorkers: CallbackWorkers) -> String {
        "\(flavor) \(mode.rawValue) \(callbackWorkers.rawValue)"
    }

    /// The largest pipe count tracked; older elements are dropped.
    static let pipeLength = 10

    /// Read sections between two quiescent states (QSBR) and two updates of
    /// the shared counters.
    static let batch = 64

    /// Stress mode: reads between two offline periods of a QSBR reader
    /// (liburcu: 0x1000), the threads that only wait for grace periods, and
    /// their pause between two waits (liburcu: 5 threads, 1 ms).
    static let offlineInterval = 4096
    static let stressWaiters = 5
    static let waiterPause: useconds_t = 1_000

    /// Numbers the cells of the process, so that each names the worker
    /// threads it creates uniquely (the tests run cells in parallel).
    static let cellSerial = Atomic<Int>(0)

    final class Element: Sendable {
        let pipe = Atomic<Int>(0)
        deinit { pipe.store(-1, ordering: .relaxed) }
    }

    final class Shared<Flavor: RCUFlavor>: Sendable {
        let current = RCUPointer<Element, Flavor>(Element())
        let stop = Atomic<Bool>(false)
        let reads = Atomic<Int>(0)
        let updates = Atomic<Int>(0)
        let errors = Atomic<Int>(0)
        let pipeHistogram = Lock([Int](repeating: 0, count: pipeLength + 1))
        let gracePeriods = Lock([Mechanism: Int]())
        /// The name of the worker threads the cell created (they take the
        /// name of the thread that creates them); nil when it uses the
        /// default worker.
        let workerThreadName: String?
        let callsOnConfiguredWorkers = Atomic<Int>(0)
        let callsElsewhere = Atomic<Int>(0)

        init(workerThreadName: String?) { self.workerThreadName = workerThreadName }

        /// Counts a `call` callback by the thread it runs on.
        func countCallbackThread() {
            let asConfigured = workerThreadName.map { currentThreadName() == $0 } ?? true
            if asConfigured {
                callsOnConfiguredWorkers.wrappingAdd(1, ordering: .relaxed)
            } else {
                callsElsewhere.wrappingAdd(1, ordering: .relaxed)
            }
        }
    }

    /// Runs one cell: readers and updaters of `flavor` as `mode` says, with
    /// callbacks on the workers `callbackWorkers` names, for as long as
    /// `goal` says; then stops the threads, removes the workers the cell
    /// created and reports what they saw.
    public static func run<Flavor: LiburcuFlavor>(
        _ flavor: Flavor.Type, mode: Mode = .readHeavy, callbackWorkers: CallbackWorkers = .global,
        goal: Goal, readers: Int = 2, waiting: Waiting = .real,
        progress: (@Sendable (TortureReport) -> Void)? = nil
    ) -> TortureReport {
        let roles = threads(mode, readers: readers)
        let workers = CellWorkers<Flavor>(callbackWorkers, updatingThreads: roles.updaters + roles.waiters)
        let shared = Shared<Flavor>(workerThreadName: workers.threadName)
        var template = TortureReport(flavor: Flavor.name, mode: mode, callbackWorkers: callbackWorkers, threads: roles)
        template.setupFailure = workers.setupFailure

        let start = monotonicSeconds()
        var running = (0..<roles.readers).map { _ in JoinableThread { reader(shared, mode: mode) } }
        for index in 0..<roles.updaters + roles.waiters {
            let worker = workers.perThread.isEmpty ? nil : workers.perThread[index]
            let replacesElement = index < roles.updaters
            running.append(JoinableThread {
                updater(shared, replacesElement: replacesElement, firstMechanism: index, waiting: waiting, worker: worker)
            })
        }
        let gracePeriodGoal = waiting == .real ? goal.gracePeriodsPerMechanism : 0
        func goalReached(elapsed: Double) -> Bool {
            guard elapsed >= goal.seconds, shared.reads.load(ordering: .relaxed) >= goal.minimumReads else { return false }
            let counts = shared.gracePeriods.withLock { $0 }
            return Mechanism.allCases.allSatisfy { counts[$0, default: 0] >= gracePeriodGoal }
        }
        var nextProgress = start + 1
        while true {
            let elapsed = monotonicSeconds() - start
            // Nothing after an error can make the cell pass: end it, so a
            // failure shows at once.
            if shared.errors.load(ordering: .relaxed) > 0 || goalReached(elapsed: elapsed) { break }
            if elapsed >= goal.timeLimit {
                template.timedOut = true
                break
            }
            usleep(10_000)
            if let progress, monotonicSeconds() >= nextProgress {
                nextProgress += 1
                progress(report(shared, template, elapsed: monotonicSeconds() - start))
            }
        }
        shared.stop.store(true, ordering: .releasing)
        running.forEach { $0.join() }
        let elapsed = monotonicSeconds() - start

        template.leakedWorkerThreads = workers.tearDown()
        return report(shared, template, elapsed: elapsed)
    }

    /// The callback workers a cell creates, and their removal.
    ///
    /// A thread named for the cell creates them: liburcu's worker threads
    /// take the name of the thread that creates them, which tells where a
    /// callback ran and whether a worker outlived the cell.
    struct CellWorkers<Flavor: LiburcuFlavor> {
        let threadName: String?
        /// One per updating thread, in the per-thread configuration.
        var perThread: [CallbackWorker<Flavor>] = []
        var ownsPerCPUWorkers = false
        var setupFailure: String?

        init(_ configuration: CallbackWorkers, updatingThreads: Int) {
            threadName = configuration == .global
                ? nil : "torture-w\(cellSerial.wrappingAdd(1, ordering: .relaxed).newValue)"
            // Creating workers starts the flavor's default callback thread
            // if it is not running, and it would take the cell's thread
            // name and outlive the cell: start it from this thread first.
            Flavor._callWithoutBackPressure {}
            switch configuration {
            case .global:
                break
            case .perThread:
                let made = Lock<Result<[CallbackWorker<Flavor>], CallbackThreadUnavailable>>(.success([]))
                JoinableThread(name: threadName) {
                    let workers = Result { () throws(CallbackThreadUnavailable) in
                        try (0..<updatingThreads).map { _ throws(CallbackThreadUnavailable) in try CallbackWorker<Flavor>() }
                    }
                    made.withLock { $0 = workers }
                }.join()
                switch made.withLock({ $0 }) {
                case .success(let workers): perThread = workers
                case .failure(let error): setupFailure = "\(error)"
                }
            case .perCPU:
                guard !Flavor.hasCallbackWorker(forCPU: 0) else {
                    setupFailure = "the flavor already had per-CPU callback workers"
                    return
                }
                let created = Atomic<Bool>(false)
                JoinableThread(name: threadName) {
                    created.store(Flavor.createPerCPUCallbackWorkers(), ordering: .relaxed)
                }.join()
                // Removed at the end even if only some could be created.
                ownsPerCPUWorkers = true
                if !created.load(ordering: .relaxed) {
                    setupFailure = "the system could not provide per-CPU callback workers"
                }
            }
        }

        /// Shuts the workers down once the updating threads have left their
        /// scopes, and returns how many of their threads are still running.
        func tearDown() -> Int {
            perThread.forEach { $0.shutdown() }
            Flavor.barrier()
            if ownsPerCPUWorkers { Flavor.removePerCPUCallbackWorkers() }
            guard let threadName else { return 0 }
            // A stopped worker's thread ends soon after; give it time.
            _ = eventually(seconds: 10) { threadCount(named: threadName) == 0 }
            return threadCount(named: threadName)
        }
    }

    static func report<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, _ template: TortureReport, elapsed: Double) -> TortureReport {
        var report = template
        report.seconds = elapsed
        report.reads = shared.reads.load(ordering: .relaxed)
        report.updates = shared.updates.load(ordering: .relaxed)
        report.gracePeriods = shared.gracePeriods.withLock { $0 }
        report.pipeHistogram = shared.pipeHistogram.withLock { $0 }
        report.errors = shared.errors.load(ordering: .relaxed)
        report.callsOnConfiguredWorkers = shared.callsOnConfiguredWorkers.load(ordering: .relaxed)
        report.callsElsewhere = shared.callsElsewhere.load(ordering: .relaxed)
        return report
    }

    static func reader<Flavor: RCUFlavor>(_ shared: Shared<Flavor>, mode: Mode) {
        let isQSBR = Flavor.self == QuiescentStateRCU.self
        if isQSBR { QuiescentStateRCU.registerThread() }
        let nested = mode == .stress
        var histogram = [Int](repeating: 0, count: pipeLength + 1)
        var batches = 0
        while !shared.stop.load(ordering: .relaxed) {
            var errors = 0
            for _ in 0..<batch {
                let pipe = Flavor.read { section in
                    shared.current.dereference(in: section) { element -> Int in
                        guard let element else { return -2 }
                        if nested { Flavor.read { _ in linger(on: element) } } else { linger(on: element) }
                        return element.pipe.load(ordering: .acquiring)
                    }
                }
                if pipe < 0 || pipe > 1 { errors += 1 }
                // As liburcu's: a freed element counts as the oldest.
                histogram[pipe < 0 ? pipeLength : min(pipe, pipeLength)] += 1
            }
            // Shared counters once per batch, so progress reports are live
            // without a shared write per read.
            shared.reads.wrappingAdd(batch, ordering: .relaxed)
            if errors > 0 { shared.errors.wrappingAdd(errors, ordering: .relaxed) }
            batches += 1
            if isQSBR {
                QuiescentStateRCU.quiescentState()
                if nested, batches % (offlineInterval / batch) == 0 {
                    QuiescentStateRCU.whileOffline { QuiescentStateRCU.synchronize() }
                }
            }
        }
        if isQSBR { QuiescentStateRCU.unregisterThread() }
        shared.pipeHistogram.withLock { total in
            for index in total.indices { total[index] += histogram[index] }
        }
    }

    /// Stays in the section a little, so that a grace period has a chance to
    /// (wrongly) end under the reader.
    @inline(__always)
    static func linger(on element: Element) {
        var spins = 0
        while spins < 16, element.pipe.load(ordering: .relaxed) >= 0 { spins += 1 }
    }

    /// An updating thread: replaces the element and waits for a grace period
    /// back to back (`replacesElement`), or only waits for grace periods,
    /// pausing between them (stress mode's waiters). Queues its callbacks on
    /// `worker` if it has one.
    static func updater<Flavor: LiburcuFlavor>(
        _ shared: Shared<Flavor>, replacesElement: Bool, firstMechanism: Int, waiting: Waiting,
        worker: CallbackWorker<Flavor>?
    ) {
        var removed: [Element] = []
        var rotation = firstMechanism
        let executor = QueueExecutor(label: "urcu.torture.updater")
        func loop() {
            while !shared.stop.load(ordering: .relaxed) {
                if replacesElement, let old = shared.current.exchange(Element()) {
                    old.pipe.store(1, ordering: .releasing)
                    removed.append(old)
                }
                if waiting == .real {
                    let mechanism = Mechanism.allCases[rotation % Mechanism.allCases.count]
                    rotation += 1
                    waitForGracePeriod(by: mechanism, shared, executor: executor)
                    shared.gracePeriods.withLock { $0[mechanism, default: 0] += 1 }
                }
                guard replacesElement else {
                    usleep(waiterPause)
                    continue
                }
                // Every element removed before that grace period is one
                // period older; a reader still inside a section that found
                // it would see a pipe count of 2.
                for element in removed { element.pipe.wrappingAdd(1, ordering: .releasing) }
                removed.removeAll { $0.pipe.load(ordering: .relaxed) >= pipeLength }
                shared.updates.wrappingAdd(1, ordering: .relaxed)
            }
        }
        if let worker { Flavor.withCallbackWorker(worker, loop) } else { loop() }
    }

    /// Waits for one grace period by `mechanism`.
    static func waitForGracePeriod<Flavor: RCUFlavor>(
        by mechanism: Mechanism, _ shared: Shared<Flavor>, executor: QueueExecutor
    ) {
        let done = Atomic<Bool>(false)
        switch mechanism {
        case .synchronize:
            Flavor.synchronize()
            return
        case .call:
            Flavor.call {
                shared.countCallbackThread()
                done.store(true, ordering: .releasing)
            }
        case .poll:
            let cookie = Flavor.startPoll()
            while !Flavor.poll(cookie) { usleep(50) }
            return
        case .doubleBounce:
            Flavor.afterGracePeriod(on: executor.queue) { done.store(true, ordering: .releasing) }
        case .asyncSynchronize:
            Task(executorPreference: executor) {
                await Flavor.synchronize()
                done.store(true, ordering: .releasing)
            }
        }
        while !done.load(ordering: .acquiring) { usleep(50) }
    }
}

/// What one cell of the grace-period torture saw.
public struct TortureReport: Sendable {
    public var flavor: String
    public var mode: GracePeriodTorture.Mode
    public var callbackWorkers: GracePeriodTorture.CallbackWorkers
    public var threads: GracePeriodTorture.Threads
    public var seconds = 0.0
    public var reads = 0
    /// Replacements of the element, each followed by a grace period.
    public var updates = 0
    /// Grace periods waited for, by mechanism, by every updating thread.
    public var gracePeriods: [GracePeriodTorture.Mechanism: Int] = [:]
    /// Reads by the pipe count they saw; only 0 and 1 are correct. The last
    /// entry counts that age and older, and freed elements.
    public var pipeHistogram: [Int] = []
    /// Reads that saw an element older than one grace period, or freed.
    public var errors = 0
    /// Callbacks of the `call` mechanism that ran on the workers the
    /// configuration names (per-CPU, per-thread: the cell's own workers;
    /// global: any thread but those), and those that ran elsewhere.
    public var callsOnConfiguredWorkers = 0
    public var callsElsewhere = 0
    /// Worker threads the cell created still running after it removed them.
    public var leakedWorkerThreads = 0
    /// Why the cell could not set its callback workers up, if it could not.
    public var setupFailure: String?
    /// Whether the cell reached its time limit before its goal.
    public var timedOut = false

    public var cell: String { GracePeriodTorture.cellName(flavor: flavor, mode: mode, callbackWorkers: callbackWorkers) }

    public var totalGracePeriods: Int { gracePeriods.values.reduce(0, +) }

    /// What went wrong, if anything: reads that saw a grace period end under
    /// them, readers or mechanisms that made no progress, callbacks that ran
    /// on other workers than the configuration names, workers left running.
    public var problems: [String] {
        var problems: [String] = []
        if let setupFailure { problems.append(setupFailure) }
        if errors > 0 {
            problems.append("\(errors) reads saw an element older than one grace period, or freed (pipe counts \(pipeHistogram))")
        }
        if reads == 0 { problems.append("readers made no progress") }
        let stalled = GracePeriodTorture.Mechanism.allCases.filter { gracePeriods[$0, default: 0] == 0 }
        if !stalled.isEmpty {
            problems.append("no grace period completed by \(stalled.map(\.rawValue).joined(separator: ", "))")
        }
        if timedOut { problems.append("time limit reached before the goal (reads \(reads), grace periods \(gracePeriods))") }
        if callsElsewhere > 0 {
            problems.append("\(callsElsewhere) call callbacks ran off the \(callbackWorkers.rawValue) workers")
        }
        if leakedWorkerThreads > 0 { problems.append("\(leakedWorkerThreads) callback worker threads outlived the cell") }
        return problems
    }
}
