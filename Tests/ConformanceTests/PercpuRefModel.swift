@testable import PercpuRef
import Synchronization
import URCU
import URCUTesting

/// The grace-period domain of the PercpuRef model-based tests.
enum PercpuModelDomain {}
typealias PercpuModelRCU = ManualRCU<PercpuModelDomain>

/// ``PercpuModelRCU`` with one addition: a thread can be stopped just
/// before it leaves its read section, the point at which a percpu get or
/// put of `PercpuRef` has read the mode and written its counter.
///
/// `PercpuRef.tla` splits such a get or put in two steps: the mode is read
/// inside the read section (`AcquireSeesPercpu`, `PutSeesPercpu`), and the
/// counter is written and the section left later (`PercpuOpDone`). The test
/// parks the thread here, takes the counter write back while the thread is
/// parked, and makes it again when the spec's second step comes: the only
/// other writer of a thread's counter is the switch to atomic mode, whose
/// sum zeroes it after a grace period, which waits for the parked thread
/// (and the thread's own exit, which cannot come while it is parked).
enum ParkingRCU: RCUFlavor {
    /// What each thread (by `PercpuModelRCU.currentThread`) runs before
    /// leaving its next read section.
    static let beforeUnlock = Lock<[UInt: @Sendable () -> Void]>([:])

    static var name: String { "parking-\(PercpuModelRCU.name)" }
    static var _accounting: GracePeriodAccounting { PercpuModelRCU._accounting }
    static var isInReadSection: Bool { PercpuModelRCU.isInReadSection }

    /// Two threads whose read sections are not tracked (0: none): those
    /// of an interleaving test. The other thread must not wait for a lock
    /// the stepped one may hold (`PercpuModelRCU`'s), and the stepped one
    /// is faster to step without it. No grace period starts or ends
    /// meanwhile, and the steps they take there leave `rcuReaders` as they
    /// found it.
    static let untrackedOther = Atomic<UInt>(0)
    static let untrackedStepped = Atomic<UInt>(0)

    static func isTracked(_ thread: UInt) -> Bool {
        untrackedOther.load(ordering: .relaxed) != thread && untrackedStepped.load(ordering: .relaxed) != thread
    }

    static func _readLock() {
        if isTracked(PercpuModelRCU.currentThread) { PercpuModelRCU._readLock() }
    }

    static func _readUnlock() {
        let thread = PercpuModelRCU.currentThread
        guard isTracked(thread) else { return }
        beforeUnlock.withLock { $0.removeValue(forKey: thread) }?()
        PercpuModelRCU._readUnlock()
    }

    static func _synchronize() { PercpuModelRCU._synchronize() }
    static func call(_ callback: @escaping @Sendable () -> Void) { PercpuModelRCU.call(callback) }
    static func retire(_ object: Unmanaged<AnyObject>) { PercpuModelRCU.retire(object) }
    static func barrier() { PercpuModelRCU.barrier() }
    static func barrier() async { PercpuModelRCU.barrier() }
}

/// A value a worker's job hands to the test: the worker's semaphores order
/// the write before the read.
final class HandedOver<Value>: @unchecked Sendable {
    var value: Value
    init(_ value: Value) { self.value = value }
}

/// The implementation under test.
typealias ModelRef = PercpuRef<ParkingRCU>

/// One run of a `PercpuRef<ParkingRCU>` along `Spec/MBTPercpuRef.tla`'s
/// state graph: the ref, a worker thread per spec thread, and the mapping
/// from the ref's representation to the spec's variables.
///
/// Spec thread `t` runs on its worker, and the spec's CPU `t` (the
/// configurations make CPUs the threads) is the ref's counter in that
/// worker's area (`CounterAreas`), plus what the spec thread's earlier
/// workers folded when they exited. Workers are replaced now and then
/// (``replaceWorker(_:)``): the old one's exit folds its counter into the
/// areas' folded count of the ref, and it still counts as CPU `t`'s.
final class PercpuModelRun {
    let ref: ModelRef
    let threadNames: [String]
    /// Times the ref's release closure ran, and how many of them before
    /// the last reinit: the spec's `releases` counts since then.
    private let releases = Counter()
    private var releasesBeforeReinit = 0
    private var workers: [String: Worker] = [:]
    /// The area of each spec thread's current worker, and the references
    /// its earlier workers folded at their exit (until a switch collects
    /// them).
    private var areaOf: [String: UInt] = [:]
    private var foldedBy: [String: Int] = [:]
    /// What the spec tracks and the ref does not: references each thread
    /// holds, whether the initial reference is held, and the operation a
    /// parked thread is in ("inc"/"dec").
    private(set) var held: [String: Int] = [:]
    private(set) var initialRef = true
    private var pending: [String: String] = [:]
    /// The area whose counter a parked thread wrote.
    private var parkedArea: [String: UInt] = [:]
    /// Rotates through the operations that lead to the same spec state.
    private var choice = 0

    init(threads: [String]) throws {
        // A run that failed may have left callbacks, readers or parks behind.
        PercpuModelRCU.reset()
        ParkingRCU.beforeUnlock.withLock { $0 = [:] }
        threadNames = threads
        let releases = releases
        ref = ModelRef(options: .allowReinit) { releases.increment() }
        for name in threads {
            held[name] = 0
            workers[name] = try startWorker(for: name)
        }
    }

    /// Stops the workers; the ref must not be inside an operation.
    func finish() throws {
        if let parked = pending.first { throw ConformanceFailure("\(parked.key) is still inside an operation at the end") }
        for worker in workers.values { worker.quit() }
        workers = [:]
        PercpuModelRCU.reset()
    }

    /// A worker for spec thread `name`, with its counter area (live
    /// threads' areas are distinct).
    private func startWorker(for name: String) throws -> Worker {
        let worker = Worker(name: name)
        var area: UInt = 0
        try worker.perform { area = CounterAreas.assignedArea }
        areaOf[name] = area
        return worker
    }

    /// Lets the worker of `name` exit and gives the spec thread a new one.
    func replaceWorker(_ name: String) throws {
        precondition(pending[name] == nil, "replacing a parked worker")
        foldedBy[name, default: 0] += netCount(in: areaOf[name]!)
        workers[name]!.quit()
        workers[name] = try startWorker(for: name)
    }

    // MARK: Steps

    /// Takes spec step `step` on the implementation, from spec state `state`.
    func perform(_ step: SpecStep, in state: [String: TLAValue]) throws {
        switch step.action {
        case "GracePeriodStart": PercpuModelRCU.startGracePeriod()
        case "GracePeriodEnd": PercpuModelRCU.endGracePeriod()
        case "SwitchConfirm", "Kill", "SwitchToAtomic", "SwitchToPercpu", "Resurrect", "Reinit":
            let action = try singleAction(step, operation: nil)
            action.settle(action.body())
        case "AcquireSeesPercpu", "PutSeesPercpu":
            let thread = step.thread!
            let increment = step.action == "AcquireSeesPercpu"
            let worker = workers[thread]!
            let operation = increment ? acquisition(thread, in: state) : "put"
            let parkedAt = HandedOver<UInt?>(nil)
            ParkingRCU.beforeUnlock.withLock { parkings in
                parkings[worker.threadID] = {
                    parkedAt.value = CounterAreas.callingThreadArea
                    worker.park()
                }
            }
            let succeeded = try run(operation, on: worker)
            guard worker.isParked, let area = parkedAt.value else {
                ParkingRCU.beforeUnlock.withLock { _ = $0.removeValue(forKey: worker.threadID) }
                throw ConformanceFailure("\(step): \(operation) did not take the percpu path (it returned \(succeeded))")
            }
            guard succeeded else { throw ConformanceFailure("\(step): \(operation) failed in percpu mode") }
            // Take the counter write back: the spec makes it in PercpuOpDone.
            adjustCounter(area: area, gets: increment, by: -1)
            pending[thread] = increment ? "inc" : "dec"
            parkedArea[thread] = area
            held[thread]! += increment ? 1 : -1
        case "PercpuOpDone":
            let thread = step.thread!
            let worker = workers[thread]!
            guard let operation = pending.removeValue(forKey: thread), worker.isParked else {
                throw ConformanceFailure("\(step): \(thread) is not inside a percpu operation")
            }
            // Make the write the thread made, on its own counter.
            adjustCounter(area: parkedArea.removeValue(forKey: thread)!, gets: operation == "inc", by: 1)
            try worker.resume()
        case "GetAtomic", "TryAcquireAtomic", "PutAtomic":
            let operation = step.action == "PutAtomic" ? "put" : acquisition(step.thread!, in: state)
            let action = try singleAction(step, operation: operation)
            var succeeded = true
            try workers[step.thread!]!.perform { succeeded = action.body() }
            action.settle(succeeded)
        default:
            throw ConformanceFailure("\(step): not a step of PercpuRef.tla the test knows")
        }
    }

    /// The acquisition that thread `thread` makes next from `state`: get,
    /// tryGet and tryGetLive in turn, among those the spec allows there
    /// (all three lead to the same state when they succeed).
    private func acquisition(_ thread: String, in state: [String: TLAValue]) -> String {
        let mayGet = held[thread]! > 0 || initialRef
        let dead = state["ref"]!["dead"]!.boolValue!
        let atomic = state["ref"]!["atomicFlag"]!.boolValue!
        let allowed = ["get", "tryget", "tryget_live"].filter { ($0 != "get" || mayGet) && !($0 == "tryget_live" && dead && atomic) }
        choice += 1
        return allowed[choice % allowed.count]
    }

    /// Runs `operation` on `worker` until it returns or parks; returns what
    /// it returned (true for get and put).
    private func run(_ operation: String, on worker: Worker) throws -> Bool {
        let body = referenceOperation(operation)
        var succeeded = true
        try worker.perform { succeeded = body() }
        return succeeded
    }

    /// `PercpuRef`'s get ("get"), tryGet ("tryget"), tryGetLive
    /// ("tryget_live") or put ("put"); returns what it returned (true for
    /// get and put).
    func referenceOperation(_ operation: String) -> @Sendable () -> Bool {
        let ref = ref
        switch operation {
        case "get": return { ref.get(); return true }
        case "tryget": return { ref.tryGet() }
        case "tryget_live": return { ref.tryGetLive() }
        default: return { ref.put(); return true }
        }
    }

    /// A spec step that is one call on the ref, `operation` for a thread's
    /// acquisition: `body` makes the call on any thread and returns what it
    /// returned; `settle`, given that, records in the run what the spec
    /// tracks and the ref does not.
    func singleAction(_ step: SpecStep, operation: String?) throws
        -> (body: @Sendable () -> Bool, settle: (Bool) -> Void)
    {
        let ref = ref
        switch step.action {
        case "SwitchConfirm":
            let ready = PercpuModelRCU.snapshot.ready
            guard ready.count == 1 else {
                throw ConformanceFailure("SwitchConfirm: \(ready.count) callbacks ready in the implementation (1 expected)")
            }
            // The switch's sum collects what exited workers folded.
            return ({ PercpuModelRCU.runReadyCallback(ready[0]) }, { _ in self.foldedBy = [:] })
        case "Kill": return ({ ref.kill(); return true }, { _ in self.initialRef = false })
        case "SwitchToAtomic": return ({ ref.switchToAtomic(); return true }, { _ in })
        case "SwitchToPercpu": return ({ ref.switchToPercpu(); return true }, { _ in })
        case "Resurrect": return ({ ref.resurrect(); return true }, { _ in self.initialRef = true })
        case "Reinit":
            let releasesBefore = releases.value
            return ({ ref.reinit(); return true }, { _ in
                self.initialRef = true
                self.releasesBeforeReinit = releasesBefore
            })
        case "GetAtomic", "TryAcquireAtomic", "PutAtomic":
            let thread = step.thread!, operation = operation!
            return (referenceOperation(operation), { succeeded in
                if succeeded { self.held[thread]! += operation == "put" ? -1 : 1 }
            })
        default:
            throw ConformanceFailure("\(step): not one call on the ref")
        }
    }

    func worker(_ thread: String) -> Worker { workers[thread]! }

    /// The counter area of the current worker of `thread`.
    func area(of thread: String) -> UInt { areaOf[thread]! }

    /// Makes acquisition `operation` on the worker of `thread`; returns
    /// whether it succeeded (the test then holds the reference).
    func succeeds(_ operation: String, thread: String) throws -> Bool {
        let succeeded = try run(operation, on: workers[thread]!)
        if succeeded { held[thread]! += 1 }
        return succeeded
    }

    /// The ref's counters in `area`.
    func counters(in area: UInt) -> UnsafeMutablePointer<ThreadCounters> {
        CounterAreas.counters(in: area, atOffset: ref.offset!)
    }

    /// Adds `delta` to the gets or puts of the ref's counters in `area`, on
    /// behalf of its parked owner.
    private func adjustCounter(area: UInt, gets: Bool, by delta: Int) {
        let counters = counters(in: area)
        if gets {
            counters.pointee.gets.wrappingAdd(delta, ordering: .relaxed)
        } else {
            counters.pointee.puts.wrappingAdd(delta, ordering: .relaxed)
        }
    }

    private func netCount(in area: UInt) -> Int { counters(in: area).pointee.net }

    // MARK: The refinement mapping

    /// The ref's state as `PercpuRef.tla`'s variables.
    func abstractState() throws -> [String: TLAValue] {
        let word = ref.offsetAndMode.load(ordering: .acquiring)
        let view = ref.abstractState
        let raw = ref.count.load(ordering: .acquiring)
        // The bias is 2^62; the counts the tests reach are tiny beside it.
        let biased = raw > ModelRef.bias / 2
        var pcpu: [TLAValue: TLAValue] = [:]
        var attributed = 0
        for name in threadNames {
            let live = netCount(in: areaOf[name]!)
            pcpu[.model(name)] = .int(live + foldedBy[name, default: 0])
            attributed += live
        }
        let (live, folded) = CounterAreas.peek(ref.offset!)
        if live != attributed {
            throw ConformanceFailure("the live threads' counters hold \(live) references, the spec threads' areas \(attributed)")
        }
        let foldedBySpecThreads = foldedBy.values.reduce(0, +)
        if folded != foldedBySpecThreads {
            throw ConformanceFailure("exited threads folded \(folded) references, the spec threads' earlier workers \(foldedBySpecThreads)")
        }
        let snapshot = PercpuModelRCU.snapshot
        let names = Dictionary(uniqueKeysWithValues: workers.map { ($0.value.threadID, $0.key) })
        func threads(_ ids: Set<UInt>) -> TLAValue {
            .set(Set(ids.map { TLAValue.model(names[$0] ?? "thread\($0)") }))
        }
        // The spec has one callback, the switch's; any other the
        // implementation queued shows under its ID.
        let switchCallback = (snapshot.queued + snapshot.waiting + snapshot.ready).min()
        func callbacks(_ ids: [Int]) -> TLAValue {
            .set(Set(ids.map { $0 == switchCallback ? TLAValue.string("switch") : .string("callback \($0)") }))
        }
        return [
            "ref": .record([
                "atomicFlag": .bool(word & ModelRef.atomicMode != 0), "dead": .bool(word & ModelRef.deadFlag != 0),
                "forceAtomic": .bool(view.forceAtomic), "switching": .bool(view.mode == .switching),
                "count": .int(biased ? raw - ModelRef.bias : raw), "biased": .bool(biased),
                "pcpu": .function(pcpu), "releases": .int(releases.value - releasesBeforeReinit),
            ]),
            "held": .function(Dictionary(uniqueKeysWithValues: threadNames.map { (.model($0), .int(held[$0]!)) })),
            "initialRef": .bool(initialRef),
            "pending": .function(Dictionary(uniqueKeysWithValues: threadNames.map {
                (.model($0), .string(pending[$0] ?? "none"))
            })),
            "rcuReaders": .record(["sched": threads(snapshot.readers)]),
            "rcuGp": .record([
                "sched": .record(["active": .bool(snapshot.isGracePeriodActive), "waitFor": threads(snapshot.waitingFor)])
            ]),
            "rcuCallbacks": .record([
                "sched": .record([
                    "queued": callbacks(snapshot.queued), "waiting": callbacks(snapshot.waiting),
                    "ready": callbacks(snapshot.ready),
                ])
            ]),
        ]
    }
}
