@testable import ContextTable
import Dispatch
import PercpuRef
import Synchronization
import URCU
import URCUTesting

/// The grace-period domain of the model-based tests.
enum ModelDomain {}
typealias ModelFlavor = ManualRCU<ModelDomain>

/// A cleanup executor that runs a job only when the test says which.
final class ManualExecutor: BlockingExecutor, @unchecked Sendable {
    private let jobs = Lock<[(id: Int, work: @Sendable () -> Void)]>([])
    private let lastID = Atomic<Int>(0)

    func execute(_ work: @escaping @Sendable () -> Void) {
        let id = lastID.wrappingAdd(1, ordering: .relaxed).newValue
        jobs.withLock { $0.append((id, work)) }
    }

    var pending: [Int] { jobs.withLock { $0.map(\.id) } }

    func run(_ id: Int) {
        let job = jobs.withLock { jobs -> (@Sendable () -> Void)? in
            guard let index = jobs.firstIndex(where: { $0.id == id }) else { return nil }
            return jobs.remove(at: index).work
        }
        guard let job else { fatalError("ManualExecutor: no job \(id)") }
        job()
    }
}

/// A real thread that runs the operations of one spec thread (or one
/// create, or the system steps that may run a release), and can be
/// stopped in the middle of one: the recorder parks it after the steps
/// that the spec separates from what follows (`LookupLoad` inside the read
/// section, `CreateReserve` before the publish), before a release that a
/// put or a switch callback runs inline, and, when the test asks, before
/// the step of a completion that has claimed its request.
final class Worker: @unchecked Sendable {
    let name: String
    private let command = DispatchSemaphore(value: 0)
    private let stopped = DispatchSemaphore(value: 0)
    private let resumed = DispatchSemaphore(value: 0)
    // Handed between the test and the worker through the semaphores.
    private var job: (() -> Void)?
    private var quitting = false
    private(set) var isParked = false
    /// The release (or claimed completion) the worker is parked before.
    private(set) var parkedBefore: LifecycleEvent?
    /// Set by the test: the worker's next completion, having claimed its
    /// request, stops before its step.
    var stopsBeforeNextCompletion = false
    private(set) var threadID: UInt = 0
    private var thread: JoinableThread?
    /// The lease this spec thread holds; touched only by its jobs.
    var lease: ContextLease<ModelFlavor>?

    init(name: String, recorder: LifecycleTraceRecorder? = nil) {
        self.name = name
        let started = DispatchSemaphore(value: 0)
        thread = JoinableThread(name: name) { [self] in
            threadID = ModelFlavor.currentThread
            recorder?.nameCurrentThread(name)
            started.signal()
            while true {
                command.wait()
                if quitting { return }
                job?()
                job = nil
                stopped.signal()
            }
        }
        started.wait()
    }

    /// Runs `body` on the worker until it finishes or parks.
    func perform(_ body: @escaping () -> Void) throws {
        precondition(!isParked, "\(name) is parked")
        job = body
        command.signal()
        try waitUntilStopped()
    }

    /// Lets a parked worker go on until it finishes or parks again.
    func resume() throws {
        precondition(isParked, "\(name) is not parked")
        isParked = false
        parkedBefore = nil
        resumed.signal()
        try waitUntilStopped()
    }

    /// Called on the worker's own thread: stop here until ``resume()``;
    /// `release`: the release step it stops before.
    func park(before release: LifecycleEvent? = nil) {
        parkedBefore = release
        isParked = true
        stopped.signal()
        resumed.wait()
    }

    private func waitUntilStopped() throws {
        if stopped.wait(timeout: .now() + 60) == .timedOut {
            throw ConformanceFailure("\(name) neither finished nor parked within 60 s")
        }
    }

    func quit() {
        precondition(!isParked, "\(name) is parked")
        quitting = true
        command.signal()
        thread?.join()
    }
}

/// A buggy reclamation for negative controls: the free goes to the cleanup
/// executor at once, trusting that percpu_ref's switch waited for readers
/// (the 2018 fs/aio bug).
struct FreeWithoutGracePeriod: ContextReclamation {
    func scheduleFree<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, on executor: some BlockingExecutor, free: @escaping @Sendable () -> Void
    ) {
        executor.execute(free)
    }
}

/// The workers of a run by thread, for the recorder's hooks, which run on
/// the workers themselves.
final class WorkerRegistry: Sendable {
    private let workers = Lock<[UInt: Worker]>([:])

    func register(_ worker: Worker) { workers.withLock { $0[worker.threadID] = worker } }
    func worker(_ thread: UInt) -> Worker? { workers.withLock { $0[thread] } }
    /// The worker running the caller, if it is one.
    var current: Worker? { worker(ModelFlavor.currentThread) }
    var all: [Worker] { workers.withLock { Array($0.values) } }
}

/// The constants of one `MBTLifecycle*.cfg`.
struct ModelBounds {
    var contexts: Int
    var threads: Int
    var slots = 1
    var maxRequests = 1
    var budget: Int

    var contextNames: [String] { (1...contexts).map { SpecStep.context($0) } }
    var threadNames: [String] { (1...threads).map { "t\($0)" } }
    var slotNames: [String] { (0..<slots).map { SpecStep.slot($0) } }
}

/// One run of the implementation, driven along the state graph: a fresh
/// table over ``ModelFlavor``, a worker per spec thread and per context's
/// create, workers for the system steps, and the mapping from the
/// implementation's state to the spec's.
///
/// A put (or a switch callback) that drops a ref to zero runs its release
/// inline; the spec has the release as a step of its own, which other
/// steps may precede. The run stops the worker before the release, so
/// that the test can take those steps first. The spec's thread is done
/// with its step by then (only the OS thread is busy with the release),
/// so it goes on, on a fresh worker.
///
/// users' release completes the requests it cancels inside itself, before
/// it kills reqs; the spec's cancelled requests complete after the release
/// (as the kernel's do). The implementation rests in those states when a
/// completion claimed the request before the release could cancel it: to
/// reach them, the run starts such completions and stops them before
/// their step.
final class ModelRun {
    let bounds: ModelBounds
    let recorder: LifecycleTraceRecorder
    let executor = ManualExecutor()
    let table: ContextTable<ModelFlavor>
    private var threadWorkers: [String: Worker] = [:]
    private var creators: [String: Worker] = [:]
    /// Workers stopped before a release they run inline or before a
    /// claimed completion, and idle ones for the system steps (Complete,
    /// the callbacks).
    private var stopped: [Worker] = []
    private var spareWorkers: [Worker] = []
    private let registry = WorkerRegistry()
    private let ids = Lock<[String: ContextID]>([:])
    private let requests = Lock<[String: [ContextRequest<ModelFlavor>]]>([:])
    /// Contexts whose create has been issued.
    private var issued: Set<String> = []
    /// What each spec thread is doing: nil, or (phase, context).
    private var readers: [String: (phase: String, context: String)] = [:]
    /// ManualRCU callback IDs and executor job IDs, named as the spec
    /// names them (`<<"users", c1>>`; the context).
    private var callbackNames: [Int: TLAValue] = [:]
    private var jobNames: [Int: String] = [:]
    private var consumed = 0
    /// Alternates between the two ways a create fails before the budget.
    private var earlyFailureNext = true

    init(bounds: ModelBounds, reclamation: any ContextReclamation) throws {
        self.bounds = bounds
        // A run that failed may have left callbacks behind.
        ModelFlavor.reset()
        let registry = registry
        recorder = LifecycleTraceRecorder(
            keepsContexts: true,
            afterStep: { event in
                switch event {
                case .createReserve, .lookupLoad: registry.current?.park()
                default: break
                }
            },
            beforeStep: { event in
                guard let worker = registry.current else { return }
                switch event {
                case .usersReleased, .reqsReleased: worker.park(before: event)
                // Not a Complete nested in users' release (its worker is not
                // asked to stop): the release's own step has not taken
                // effect before it.
                case .complete where worker.stopsBeforeNextCompletion:
                    worker.stopsBeforeNextCompletion = false
                    worker.park(before: event)
                default: break
                }
            })
        table = ContextTable(
            capacity: bounds.slots, requestBudget: bounds.budget, cleanupExecutor: executor,
            reclamation: reclamation, recorder: recorder)
        for name in bounds.threadNames { threadWorkers[name] = makeWorker(name) }
        for name in bounds.contextNames { creators[name] = makeWorker("create-\(name)") }
    }

    private func makeWorker(_ name: String) -> Worker {
        let worker = Worker(name: name, recorder: recorder)
        registry.register(worker)
        return worker
    }

    /// Runs `body` on a spare worker, and files it.
    private func performOnSystemWorker(_ body: @escaping () -> Void) throws {
        let worker = spareWorkers.popLast() ?? makeWorker("system")
        try worker.perform(body)
        file(worker)
    }

    /// Files a system worker that has stopped: with the stopped ones, or
    /// with the spare ones if it finished.
    private func file(_ worker: Worker) {
        if worker.parkedBefore == nil { spareWorkers.append(worker) } else { stopped.append(worker) }
    }

    /// Resumes the worker stopped before `event`, if any.
    private func resumeWorker(stoppedBefore event: LifecycleEvent) throws -> Bool {
        guard let index = stopped.firstIndex(where: { $0.parkedBefore == event }) else { return false }
        let worker = stopped.remove(at: index)
        try worker.resume()
        file(worker)
        return true
    }

    /// Stops the workers and checks that the table gave everything back.
    func finish() throws {
        for worker in registry.all {
            if worker.isParked { throw ConformanceFailure("\(worker.name) is still inside an operation at the end") }
            try worker.perform { worker.lease = nil }
            worker.quit()
        }
        recorder.forgetContexts()
        let statistics = table.waitForAll(timeoutSeconds: 10)
        if !statistics.isClean { throw ConformanceFailure("the run ended with a leak: \(statistics)") }
        if !executor.pending.isEmpty || ModelFlavor.queuedCallbacks != 0 {
            throw ConformanceFailure("the run ended with work or callbacks pending")
        }
    }

    private func tag(_ context: String) -> Int { Int(context.dropFirst())! }

    private func contextObject(_ name: String) -> Context<ModelFlavor>? {
        recorder.context(tag(name)) as? Context<ModelFlavor>
    }

    /// Takes the spec step `step` (from the current state `state`; `next`
    /// is the step the test means to take after it) on the
    /// implementation, and returns every spec step it took as a result, in
    /// order.
    func perform(_ step: SpecStep, in state: [String: TLAValue], then next: SpecStep? = nil) throws -> [SpecStep] {
        let context = step.context
        switch step.action {
        case "GracePeriodStart":
            ModelFlavor.startGracePeriod()
            return [step]
        case "GracePeriodEnd":
            ModelFlavor.endGracePeriod()
            return [step]
        case "UserWritesRingHead":
            guard let object = contextObject(context!) else { throw ConformanceFailure("no context \(context!)") }
            object.ring.userIndices.pointee.head = UInt32(step.detail!)!
            return [step]
        case "CreateReserve":
            issued.insert(context!)
            let atomic = step.detail == "atomic"
            recorder.chooseNextTag(tag(context!))
            try creators[context!]!.perform { [self] in
                if let id = try? table.create(maxRequests: bounds.maxRequests, atomicReferences: atomic) {
                    ids.withLock { $0[context!] = id }
                }
            }
        case "CreateFails":
            issued.insert(context!)
            let budgetFull = state["aioNr"]!.intValue! + bounds.maxRequests > bounds.budget
            // Both failures lead to the same state: take each in turn.
            let early = !budgetFull || earlyFailureNext
            earlyFailureNext.toggle()
            recorder.chooseNextTag(tag(context!))
            try creators[context!]!.perform { [self] in
                _ = try? table.create(maxRequests: early ? 0 : bounds.maxRequests)
            }
        case "CreatePublish", "CreateFailsTableInsert":
            try creators[context!]!.resume()
        case "LookupLoad":
            guard let id = ids.withLock({ $0[context!] }) else { throw ConformanceFailure("no ID for \(context!)") }
            let worker = threadWorkers[step.thread!]!
            try worker.perform { [table] in worker.lease = table.lookup(id) }
        case "LookupTrygetLiveOk", "LookupTrygetLiveFails":
            try threadWorkers[step.thread!]!.resume()
        case "LookupPut":
            let worker = threadWorkers[step.thread!]!
            try worker.perform { worker.lease = nil }
            if worker.parkedBefore != nil {
                stopped.append(worker)
                threadWorkers[step.thread!] = makeWorker(step.thread!)
            }
        case "Reap":
            guard let holder = readers.first(where: { $0.value == ("holding", context!) })?.key else {
                throw ConformanceFailure("\(step): no thread holds \(context!)")
            }
            let worker = threadWorkers[holder]!
            try worker.perform { _ = worker.lease?.reapEvents(maximum: Int(step.detail!)!) }
        case "Submit", "Destroy":
            // Any thread holding the context (the graph merges them).
            guard let holder = readers.first(where: { $0.value == ("holding", context!) })?.key else {
                throw ConformanceFailure("\(step): no thread holds \(context!)")
            }
            let worker = threadWorkers[holder]!
            let submit = step.action == "Submit"
            try worker.perform { [self] in
                switch worker.lease {
                case .some(let lease):
                    if submit {
                        if let request = try? lease.submit() { requests.withLock { $0[context!, default: []].append(request) } }
                    } else {
                        try? table.destroy(lease)
                    }
                case .none: break
                }
            }
        case "Complete":
            if try resumeWorker(stoppedBefore: .complete(context: tag(context!))) { break }
            guard let request = requests.withLock({ $0[context!]?.popLast() }) else {
                throw ConformanceFailure("Complete(\(context!)): no request in flight")
            }
            try performOnSystemWorker { request.complete() }
        case "UsersRelease":
            // Unless the route goes on with the completions of the requests
            // the release cancels, completions claim them first.
            if let next, next.action != "Complete" || next.context != context {
                for request in requests.withLock({ $0.removeValue(forKey: context!) ?? [] }) {
                    let worker = spareWorkers.popLast() ?? makeWorker("system")
                    worker.stopsBeforeNextCompletion = true
                    try worker.perform { request.complete() }
                    guard worker.parkedBefore == .complete(context: tag(context!)) else {
                        throw ConformanceFailure("\(step): a completion did not stop before its step")
                    }
                    stopped.append(worker)
                }
            }
            guard try resumeWorker(stoppedBefore: .usersReleased(context: tag(context!))) else {
                throw ConformanceFailure("\(step): no thread is stopped before it")
            }
        case "ReqsRelease":
            guard try resumeWorker(stoppedBefore: .reqsReleased(context: tag(context!))) else {
                throw ConformanceFailure("\(step): no thread is stopped before it")
            }
        case "RefSwitchConfirm", "FreeRcuCallback":
            let name: TLAValue = .tuple([.string(step.action == "FreeRcuCallback" ? "free" : step.detail!), .model(context!)])
            guard let id = callbackNames.first(where: { $0.value == name })?.key else {
                throw ConformanceFailure("\(step): no callback \(name) queued in the implementation")
            }
            guard ModelFlavor.snapshot.ready.contains(id) else {
                throw ConformanceFailure("\(step): callback \(name) is not ready")
            }
            try performOnSystemWorker { ModelFlavor.runReadyCallback(id) }
        case "FreeWork":
            guard let id = jobNames.first(where: { $0.value == context! })?.key else {
                throw ConformanceFailure("\(step): no free job for \(context!) on the executor")
            }
            executor.run(id)
        default:
            throw ConformanceFailure("\(step): not a step the test can take (it happens inside another)")
        }
        let entries = recorder.recorded
        defer { consumed = entries.count }
        let taken = entries[consumed...].map(\.step)
        for observed in taken { note(observed) }
        return taken
    }

    /// Keeps the spec thread's state as the implementation's events tell it.
    private func note(_ step: SpecStep) {
        guard let thread = step.thread, let context = step.context else { return }
        switch step.action {
        case "LookupLoad": readers[thread] = ("loaded", context)
        case "LookupTrygetLiveOk": readers[thread] = ("holding", context)
        case "LookupTrygetLiveFails", "LookupPut": readers[thread] = nil
        default: break
        }
    }

    /// Names the callbacks and jobs the implementation queued during the
    /// last step, from the spec's callbacks and frees queued along the
    /// edges it followed.
    func nameNewCallbacks(specQueued: [TLAValue], specFreeCallbacks: [String]) throws {
        let snapshot = ModelFlavor.snapshot
        let fresh = (snapshot.queued + snapshot.waiting + snapshot.ready).filter { callbackNames[$0] == nil }.sorted()
        guard fresh.count == specQueued.count else {
            throw ConformanceFailure(
                "the implementation queued \(fresh.count) grace-period callback(s), the spec \(specQueued.count) (\(specQueued))")
        }
        for (id, name) in zip(fresh, specQueued) { callbackNames[id] = name }
        let jobs = executor.pending.filter { jobNames[$0] == nil }
        guard jobs.count == specFreeCallbacks.count else {
            throw ConformanceFailure(
                "the implementation queued \(jobs.count) free job(s), the spec \(specFreeCallbacks.count)")
        }
        for (id, context) in zip(jobs, specFreeCallbacks) { jobNames[id] = context }
    }

    /// The refinement mapping: the implementation's state as the spec's
    /// variables. `spec` supplies what the implementation no longer has
    /// (the ring of a freed context, whose memory is gone).
    func abstractState(spec: [String: TLAValue]) -> [String: TLAValue] {
        let noRef = TLAValue.record([
            "count": .int(0), "mode": .string("percpu"), "dead": .bool(false), "forceAtomic": .bool(false),
            "releases": .int(0),
        ])
        func ref(_ state: AbstractRefState) -> TLAValue {
            .record([
                "count": .int(state.count), "mode": .string(state.mode.rawValue), "dead": .bool(state.isDead),
                "forceAtomic": .bool(state.forceAtomic), "releases": .int(state.releases),
            ])
        }
        var ctxState: [TLAValue: TLAValue] = [:], users = ctxState, reqs = ctxState, releaseRan = ctxState
        var inFlight = ctxState, reqsAvail = ctxState, ring = ctxState, work = ctxState, frees = ctxState
        let pendingJobs = Set(executor.pending.compactMap { jobNames[$0] })
        let stoppedBefore = stopped.compactMap(\.parkedBefore)
        for name in bounds.contextNames {
            let key = TLAValue.model(name)
            var state = "unused"
            var ringValue = TLAValue.record(["head": .int(0), "tail": .int(0)])
            if issued.contains(name) { state = "failed" }
            let object = contextObject(name)
            let abandoned = object.map { $0.isFreed && $0.id.slot < 0 } ?? false
            if let object, !abandoned {
                state = object.isFreed ? "freed" : object.id.slot < 0 ? "reserved"
                    : object.dead.load(ordering: .acquiring) ? "dying" : "live"
                let usersState = object.users.abstractState, reqsState = object.reqs.abstractState
                users[key] = ref(usersState)
                reqs[key] = ref(reqsState)
                // A release has run once due and no worker is stopped
                // before it.
                let usersRan = usersState.releases > 0 && !stoppedBefore.contains(.usersReleased(context: object.tag))
                let reqsRan = reqsState.releases > 0 && !stoppedBefore.contains(.reqsReleased(context: object.tag))
                releaseRan[key] = .set(Set(
                    (usersRan ? [TLAValue.string("users")] : []) + (reqsRan ? [.string("reqs")] : [])))
                inFlight[key] = .int(object.active.withLock { $0.count })
                reqsAvail[key] = .int(object.ring.availableSlots)
                if object.isFreed {
                    ringValue = spec["ring"]![key]!
                } else {
                    let indices = object.ring.userIndices.pointee
                    ringValue = .record(["head": .int(Int(indices.head)), "tail": .int(Int(indices.tail))])
                }
            }
            ctxState[key] = .string(state)
            users[key] = users[key] ?? noRef
            reqs[key] = reqs[key] ?? noRef
            releaseRan[key] = releaseRan[key] ?? .set([])
            inFlight[key] = inFlight[key] ?? .int(0)
            reqsAvail[key] = reqsAvail[key] ?? .int(0)
            ring[key] = ringValue
            work[key] = .bool(pendingJobs.contains(name))
            frees[key] = .int(state == "freed" ? 1 : 0)
        }
        var table: [TLAValue: TLAValue] = [:]
        for (index, slotName) in bounds.slotNames.enumerated() {
            let occupant = self.table.occupant(ofSlot: index)
            let name = bounds.contextNames.first { name in
                contextObject(name).map { ObjectIdentifier($0) == occupant } ?? false
            }
            table[.model(slotName)] = .model(name ?? "NoContext")
        }
        var reader: [TLAValue: TLAValue] = [:]
        for name in bounds.threadNames {
            let state = readers[name]
            reader[.model(name)] = .record([
                "phase": .string(state?.phase ?? "idle"), "ctx": .model(state?.context ?? "NoContext"),
            ])
        }
        let snapshot = ModelFlavor.snapshot
        func threads(_ ids: Set<UInt>) -> TLAValue {
            .set(Set(ids.map { TLAValue.model(registry.worker($0)?.name ?? "thread\($0)") }))
        }
        func callbacks(_ ids: [Int]) -> TLAValue {
            .set(Set(ids.map { callbackNames[$0] ?? .string("unnamed callback \($0)") }))
        }
        return [
            "ctxState": .function(ctxState), "table": .function(table), "aioNr": .int(self.table.budgetInUse),
            "users": .function(users), "reqs": .function(reqs), "releaseRan": .function(releaseRan),
            "inFlight": .function(inFlight), "reqsAvail": .function(reqsAvail), "ring": .function(ring),
            "work": .function(work), "frees": .function(frees), "reader": .function(reader),
            "rcuReaders": .record(["rcu": threads(snapshot.readers)]),
            "rcuGp": .record([
                "rcu": .record([
                    "active": .bool(snapshot.isGracePeriodActive), "waitFor": threads(snapshot.waitingFor),
                ])
            ]),
            "rcuCallbacks": .record([
                "rcu": .record([
                    "queued": callbacks(snapshot.queued), "waiting": callbacks(snapshot.waiting),
                    "ready": callbacks(snapshot.ready),
                ])
            ]),
        ]
    }
}

extension ModelRun {
    /// The 2018 scenario, step by step: t2 loads c1 (refs atomic, so no
    /// mode switch waits for anyone) and stays parked inside its read
    /// section while t1 destroys c1 and drops the last reference; then the
    /// cleanup executor runs whatever it was given.
    static func readerInsideTeardown(reclamation: any ContextReclamation) throws -> ModelRun {
        let run = try ModelRun(bounds: ModelBounds(contexts: 1, threads: 2, budget: 1), reclamation: reclamation)
        let state: [String: TLAValue] = ["aioNr": .int(0)]
        for step in [
            SpecStep("CreateReserve", context: "c1", detail: "atomic"), SpecStep("CreatePublish", context: "c1"),
            SpecStep("LookupLoad", context: "c1", thread: "t1"), SpecStep("LookupTrygetLiveOk", context: "c1", thread: "t1"),
            SpecStep("LookupLoad", context: "c1", thread: "t2"), SpecStep("Destroy", context: "c1"),
            SpecStep("LookupPut", context: "c1", thread: "t1"), SpecStep("UsersRelease", context: "c1"),
            SpecStep("ReqsRelease", context: "c1"),
        ] {
            _ = try run.perform(step, in: state)
        }
        for job in run.executor.pending { run.executor.run(job) }
        return run
    }
}
