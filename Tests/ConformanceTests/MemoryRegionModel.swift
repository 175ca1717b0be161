@testable import MemoryRegions
import Synchronization
import TestSupport
import URCU
import URCUTesting

/// The grace-period domain of the memory-region model-based tests.
enum MemoryRegionModelDomain {}
typealias RegionModelRCU = ManualRCU<MemoryRegionModelDomain>

/// ``RegionModelRCU`` with `synchronize()` in the two steps
/// `Spec/MemoryRegion.tla` gives it: `SyncStart` queues a callback of the
/// table's flavor, `SyncEnd` runs it once its grace period has ended.
/// Between the two, the thread in `synchronize()` runs ``whileWaiting``,
/// which stops it until the test has taken `SyncEnd`.
///
/// Every callback is named as the spec names it: those `synchronize()`
/// queues are the deregistration's `"sync"`, the others its ref's
/// `"switch"` (the only other caller of `call` in a memory-region table is
/// `PercpuRef.kill()`).
enum SteppedSynchronizeRCU: RCUFlavor {
    static let whileWaiting = Lock<(@Sendable () -> Void)?>(nil)
    static let callbackNames = Lock<[Int: String]>([:])

    static var name: String { "stepped-\(RegionModelRCU.name)" }
    static var _accounting: GracePeriodAccounting { RegionModelRCU._accounting }
    static var isInReadSection: Bool { RegionModelRCU.isInReadSection }
    static func _readLock() { RegionModelRCU._readLock() }
    static func _readUnlock() { RegionModelRCU._readUnlock() }

    static func _synchronize() {
        let ended = Latch()
        queue(named: "sync") { ended.open() }
        whileWaiting.withLock { $0 }?()
        precondition(ended.isOpen, "synchronize() resumed before its grace period's callback ran")
    }

    static func call(_ callback: @escaping @Sendable () -> Void) { queue(named: "switch", callback) }

    /// Queues `callback` and names it. The test drives the run from one
    /// thread, so the last callback queued is this one.
    private static func queue(named name: String, _ callback: @escaping @Sendable () -> Void) {
        RegionModelRCU.call(callback)
        let id = RegionModelRCU.snapshot.queued.last!
        callbackNames.withLock { $0[id] = name }
    }

    static func retire(_ object: Unmanaged<AnyObject>) { RegionModelRCU.retire(object) }
    static func barrier() { RegionModelRCU.barrier() }
    static func barrier() async { RegionModelRCU.barrier() }
}

typealias ModelRegionTable = MemoryRegionTable<SteppedSynchronizeRCU>

/// Where a worker of a memory-region run stopped.
enum RegionStop: Equatable {
    /// Before the deregistration step the table's hook named.
    case beforeStep(String)
    /// Inside `synchronize()`, its callback queued.
    case inSynchronize
    /// Inside a lookup's read section, the region loaded, before the get.
    case lookupLoaded
    /// At the start of the region's release, on the thread of the last put.
    case inRelease
}

/// The stops of a run's workers, and the last step the deregistration
/// named: written by the table's hooks on the workers, read by the test
/// while they are stopped.
final class RegionStops: Sendable {
    private let reasons = Lock<[UInt: RegionStop]>([:])
    private let lastAnnounced = Lock<String?>(nil)
    let registry = WorkerRegistry()

    /// Stops the calling worker (none on another thread) until the test
    /// resumes it.
    func stop(_ reason: RegionStop) {
        guard let worker = registry.current else { return }
        reasons.withLock { $0[worker.threadID] = reason }
        worker.park()
        reasons.withLock { $0[worker.threadID] = nil }
    }

    func announce(_ step: String) { lastAnnounced.withLock { $0 = step } }
    var announced: String? { lastAnnounced.withLock { $0 } }

    func reason(_ worker: Worker) -> RegionStop? {
        worker.isParked ? reasons.withLock { $0[worker.threadID] } : nil
    }
}

/// What one spec thread holds: the reference its lookup returned.
final class HeldRegion: @unchecked Sendable {
    // Touched by the thread's worker only, and read by the test while the
    // worker is stopped (its semaphores order the accesses).
    var reference: MemoryRegionReference<SteppedSynchronizeRCU>?
    var isHolding: Bool { reference != nil }
}

/// One run of a `MemoryRegionTable` along `Spec/MemoryRegion.tla`'s state
/// graph (region `r1`): the table over ``SteppedSynchronizeRCU``, a
/// worker per spec thread, one for the deregistration (a single blocking
/// `deregister(_:)` call that the table's step hook stops before each of
/// its steps), one for the system steps (registration, the ref's switch
/// callback), and the mapping from the implementation's state to the
/// spec's.
///
/// A put (or the switch callback) that drops the count to zero runs the
/// release inline; the spec has the release as a step of its own. The
/// release hook stops the thread there, and the spec thread that made the
/// put goes on with a fresh worker. When the deregistration's own kill
/// drops the last reference, it is the deregistration that stops there,
/// and it cannot time out before the release has finished: the explorer
/// knows (``deregistrationInRelease``).
final class MemoryRegionModelRun {
    static let regionName = TLAValue.model("r1")

    let table: ModelRegionTable
    let threadNames: [String]
    /// `FixedOrder` of the spec: the steps a conforming deregistration names.
    let order: [String]
    private let stops = RegionStops()
    private var readers: [String: Worker] = [:]
    private var held: [String: HeldRegion] = [:]
    private let deregistration: Worker
    private var system: Worker
    /// The worker stopped in the release, if any.
    private var inRelease: Worker?
    /// The owner's handle, from the registration on the system worker.
    private let registered = HandedOver<MemoryRegion<SteppedSynchronizeRCU>?>(nil)

    init(threads: [String], teardown: any MemoryRegionTeardown) throws {
        // A run that failed may have left callbacks, readers or a grace
        // period behind.
        RegionModelRCU.reset()
        SteppedSynchronizeRCU.callbackNames.withLock { $0 = [:] }
        let stops = stops
        SteppedSynchronizeRCU.whileWaiting.withLock { $0 = { stops.stop(.inSynchronize) } }
        threadNames = threads
        order = try MemoryRegionSpec.order(bug: "None")
        // Timeout 0: the wait gives up at once unless the release has
        // finished, so the test chooses between the spec's WaitAndFree and
        // Timeout by the state alone.
        table = ModelRegionTable(
            capacity: 1, deregistrationTimeout: 0, teardown: teardown,
            lookupLoaded: { _ in stops.stop(.lookupLoaded) },
            releaseStarted: { stops.stop(.inRelease) },
            stepTaken: { step in
                stops.announce(step)
                // Named once synchronize() has returned: nothing to stop before.
                if step != "syncEnd" { stops.stop(.beforeStep(step)) }
            })
        deregistration = Worker(name: "deregistration")
        system = Worker(name: "system")
        stops.registry.register(deregistration)
        stops.registry.register(system)
        for name in threads {
            readers[name] = makeWorker(name)
            held[name] = HeldRegion()
        }
    }

    private func makeWorker(_ name: String) -> Worker {
        let worker = Worker(name: name)
        stops.registry.register(worker)
        return worker
    }

    private var region: MemoryRegion<SteppedSynchronizeRCU>? { registered.value }

    /// Whether the deregistration is the thread stopped in the release
    /// (its kill dropped the last reference).
    var deregistrationInRelease: Bool { stops.reason(deregistration) == .inRelease }

    /// Stops the workers, and checks that the run left nothing behind.
    func finish() throws {
        let workers = stops.registry.all
        if let parked = workers.first(where: \.isParked) {
            throw ConformanceFailure("\(parked.name) is still stopped (\(String(describing: stops.reason(parked)))) at the end")
        }
        for worker in workers { worker.quit() }
        if RegionModelRCU.queuedCallbacks != 0 { throw ConformanceFailure("the run ended with callbacks pending") }
        // The slot's retired pointer to the region.
        RegionModelRCU.barrier()
        SteppedSynchronizeRCU.whileWaiting.withLock { $0 = nil }
    }

    // MARK: Steps

    /// Takes spec step `step` on the implementation.
    func perform(_ step: SpecStep) throws {
        switch step.action {
        case "GracePeriodStart": RegionModelRCU.startGracePeriod()
        case "GracePeriodEnd": RegionModelRCU.endGracePeriod()
        case "Register":
            let atomic = step.detail == "atomic"
            try system.perform { [table, registered] in
                registered.value = try? table.register(length: 16, atomicCount: atomic)
            }
        case "Deregister", "Retry":
            guard let region else { throw ConformanceFailure("\(step): no region registered") }
            try deregistration.perform { [table] in _ = try? table.deregister(region) }
        case "Unpublish", "DropDependents", "SyncStart", "PutTable", "Kill", "WaitAndFree", "Timeout":
            guard case .beforeStep = stops.reason(deregistration) else {
                throw ConformanceFailure("\(step): the deregistration is not stopped before a step")
            }
            try deregistration.resume()
        case "SyncEnd":
            guard stops.reason(deregistration) == .inSynchronize else {
                throw ConformanceFailure("\(step): the deregistration is not inside synchronize()")
            }
            try runReadyCallback(named: "sync", for: step)
            try deregistration.resume()
        case "RefSwitchConfirm":
            try runReadyCallback(named: "switch", for: step)
        case "Release":
            guard let worker = inRelease else { throw ConformanceFailure("\(step): no thread is stopped in the release") }
            inRelease = nil
            // A spec thread's or the system's worker then finishes and
            // idles until the end of the run.
            try worker.resume()
        case "LookupLoad":
            guard let key = region?.key else { throw ConformanceFailure("\(step): no region registered") }
            let box = held[step.thread!]!
            try readers[step.thread!]!.perform { [table] in box.reference = table.lookup(key) }
        case "LookupGet":
            try readers[step.thread!]!.resume()
        case "ReaderPut":
            let box = held[step.thread!]!
            try readers[step.thread!]!.perform { box.reference = nil }
        case "Adopt":
            let box = held[step.thread!]!
            try readers[step.thread!]!.perform { box.reference.take()?.keepInRegion() }
        default:
            throw ConformanceFailure("\(step): not a step of MemoryRegion.tla the test knows")
        }
        try noteRelease()
    }

    /// Runs the ready callback the spec names `<<name, r1>>`, on the
    /// system worker (a release it drops the count for stops it there).
    private func runReadyCallback(named name: String, for step: SpecStep) throws {
        let names = SteppedSynchronizeRCU.callbackNames.withLock { $0 }
        guard let id = RegionModelRCU.snapshot.ready.first(where: { names[$0] == name }) else {
            throw ConformanceFailure("\(step): no \(name) callback is ready in the implementation")
        }
        try system.perform { RegionModelRCU.runReadyCallback(id) }
    }

    /// Files the worker a step left stopped in the release: a spec thread's
    /// or the system's is replaced (its step is done), the
    /// deregistration's goes on from there when the release is taken.
    private func noteRelease() throws {
        for (name, worker) in readers where stops.reason(worker) == .inRelease {
            try takeRelease(worker)
            readers[name] = makeWorker(name)
            held[name] = HeldRegion()
        }
        if stops.reason(system) == .inRelease {
            try takeRelease(system)
            system = makeWorker("system")
        }
        if deregistrationInRelease, inRelease !== deregistration { try takeRelease(deregistration) }
    }

    private func takeRelease(_ worker: Worker) throws {
        if let other = inRelease, other !== worker {
            throw ConformanceFailure("\(worker.name) runs a release while \(other.name) is inside one (a second release)")
        }
        inRelease = worker
    }

    // MARK: The refinement mapping

    /// The implementation's state as `MemoryRegion.tla`'s variables.
    func abstractState() -> [String: TLAValue] {
        let r1 = Self.regionName
        let region = region
        func only(_ value: TLAValue) -> TLAValue { .function([r1: value]) }
        var regionState = "unused"
        var ref = TLAValue.record([
            "count": .int(0), "mode": .string("percpu"), "dead": .bool(false), "forceAtomic": .bool(false),
            "releases": .int(0),
        ])
        var published = false, dependents = 0, cleaned = false, released = false, frees = 0
        if let region {
            switch region.phase {
            case .registered: regionState = "live"
            case .deregistering: regionState = "deregistering"
            case .timedOut: regionState = "timedOut"
            case .freed: regionState = "freed"
            }
            let state = region.references.abstractState
            ref = .record([
                "count": .int(state.count), "mode": .string(state.mode.rawValue), "dead": .bool(state.isDead),
                "forceAtomic": .bool(state.forceAtomic), "releases": .int(state.releases),
            ])
            published = table.slots[region.key.slot].region.access() == ObjectIdentifier(region)
            (dependents, cleaned) = region.dependentsState
            released = region.released.hasFinished
            frees = region.isFreed ? 1 : 0
        }
        var reader: [TLAValue: TLAValue] = [:]
        for name in threadNames {
            let phase = stops.reason(readers[name]!) == .lookupLoaded ? "loaded"
                : held[name]!.isHolding ? "holding" : "idle"
            reader[.model(name)] = .record(["phase": .string(phase), "region": r1])
        }
        let snapshot = RegionModelRCU.snapshot
        let names = SteppedSynchronizeRCU.callbackNames.withLock { $0 }
        func threads(_ ids: Set<UInt>) -> TLAValue {
            .set(Set(ids.map { TLAValue.model(stops.registry.worker($0)?.name ?? "thread\($0)") }))
        }
        func callbacks(_ ids: [Int]) -> TLAValue {
            .set(Set(ids.map { names[$0].map { TLAValue.tuple([.string($0), r1]) } ?? .string("unnamed callback \($0)") }))
        }
        return [
            "regionState": only(.string(regionState)), "published": only(.bool(published)), "ref": only(ref),
            "dependents": only(.int(dependents)), "cleaned": only(.bool(cleaned)), "step": only(stepValue()),
            "released": only(.bool(released)), "frees": only(.int(frees)), "reader": .function(reader),
            "rcuReaders": .record(["rcu": threads(snapshot.readers)]),
            "rcuGp": .record([
                "rcu": .record(["active": .bool(snapshot.isGracePeriodActive), "waitFor": threads(snapshot.waitingFor)])
            ]),
            "rcuCallbacks": .record([
                "rcu": .record([
                    "queued": callbacks(snapshot.queued), "waiting": callbacks(snapshot.waiting),
                    "ready": callbacks(snapshot.ready),
                ])
            ]),
        ]
    }

    /// The spec's `step`: the position in `FixedOrder` of the next step of
    /// the deregistration, from the last step its hook named and whether it
    /// is stopped before that step or past it (the wait, last, stays next
    /// once taken). A step the spec's order does not have shows by name.
    private func stepValue() -> TLAValue {
        guard let name = stops.announced else { return .int(1) }
        guard let index = order.firstIndex(of: name) else { return .string(name) }
        let stoppedBefore = stops.reason(deregistration) == .beforeStep(name)
        return .int(min(index + (stoppedBefore ? 1 : 2), order.count))
    }
}
