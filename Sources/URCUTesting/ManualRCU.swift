import Synchronization
import URCU

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A flavor whose grace periods start and end when the test says so.
///
/// Read sections are tracked per thread; a grace period waits for the
/// threads that were inside one when it started, as RCU's do, but it ends
/// only when the test ends it. Callbacks go through the stages of
/// `Spec/RCU.tla`: queued by ``call(_:)``, waiting once a grace period
/// starts, ready once it ends, run when the test runs them. Code generic
/// over its flavor (`PercpuRef`, `ContextTable`) can then be driven step by
/// step, in any order the spec allows.
///
/// ``completeGracePeriod()`` does it all at once: end the grace period in
/// progress, start and end a new one, run every ready callback.
///
/// `Domain` is any type, used only as a name: each domain has its own
/// callbacks and grace periods, so tests that run in parallel do not end
/// each other's grace periods. Use one domain per suite, and drive it from
/// one thread (other threads may hold read sections).
public enum ManualRCU<Domain>: RCUFlavor {
    public static var name: String { "manual(\(Domain.self))" }

    public static var _accounting: GracePeriodAccounting { state.accounting }

    public static func _readLock() {
        state.stages.withLock { $0.readDepth[currentThread, default: 0] += 1 }
    }

    public static func _readUnlock() {
        state.stages.withLock { stages in
            let thread = currentThread
            guard let depth = stages.readDepth[thread], depth > 0 else {
                rcuMisuse("\(name): read unlock without a read lock")
            }
            if depth == 1 {
                stages.readDepth[thread] = nil
                stages.waitingFor.remove(thread)
            } else {
                stages.readDepth[thread] = depth - 1
            }
        }
    }

    public static var isInReadSection: Bool {
        state.stages.withLock { $0.readDepth[currentThread] != nil }
    }

    /// A grace period here is one ``completeGracePeriod()``.
    public static func _synchronize() { completeGracePeriod() }

    public static func call(_ callback: @escaping @Sendable () -> Void) {
        state.accounting.callbackQueued()
        state.stages.withLock { stages in
            stages.nextID += 1
            stages.queued.append(ManualCallback(id: stages.nextID, body: callback))
        }
    }

    /// Retired objects are released when a grace period that started after
    /// the retire ends; they are not callbacks a test runs.
    public static func retire(_ object: Unmanaged<AnyObject>) {
        nonisolated(unsafe) let retired = object
        state.stages.withLock { $0.retiredQueued.append(ManualRetired(object: retired)) }
    }

    public static func barrier() {
        while state.stages.withLock({ !$0.isIdle }) { completeGracePeriod() }
    }

    /// The number of callbacks that have not run, in any stage.
    public static var queuedCallbacks: Int {
        state.stages.withLock { $0.queued.count + $0.waiting.count + $0.ready.count }
    }

    /// Starts a grace period (`GpStart` in `Spec/RCU.tla`): the queued
    /// callbacks wait for it, and it waits for every thread inside a read
    /// section now.
    public static func startGracePeriod() {
        state.stages.withLock { stages in
            if stages.isActive { rcuMisuse("\(name): startGracePeriod() while one is in progress") }
            stages.isActive = true
            stages.waitingFor = Set(stages.readDepth.keys)
            stages.waiting = stages.queued
            stages.queued = []
            stages.retiredWaiting = stages.retiredQueued
            stages.retiredQueued = []
        }
    }

    /// Ends the grace period in progress (`GpEnd`): its callbacks become
    /// ready and its retired objects are released. Every reader it waits
    /// for must have left.
    public static func endGracePeriod() {
        let released = state.stages.withLock { stages -> [ManualRetired] in
            if !stages.isActive { rcuMisuse("\(name): endGracePeriod() with no grace period in progress") }
            if !stages.waitingFor.isEmpty {
                rcuMisuse("\(name): endGracePeriod() while \(stages.waitingFor.count) reader(s) it waits for are still inside")
            }
            stages.isActive = false
            stages.ready += stages.waiting
            stages.waiting = []
            defer { stages.retiredWaiting = [] }
            return stages.retiredWaiting
        }
        for retired in released { retired.object.release() }
    }

    /// Runs the ready callback `id` (`InvokeCallback`). Returns false if no
    /// ready callback has that ID.
    @discardableResult
    public static func runReadyCallback(_ id: Int) -> Bool {
        let callback = state.stages.withLock { stages -> ManualCallback? in
            guard let index = stages.ready.firstIndex(where: { $0.id == id }) else { return nil }
            return stages.ready.remove(at: index)
        }
        guard let callback else { return false }
        callback.body()
        state.accounting.callbackRan()
        return true
    }

    /// Ends a grace period: runs the callbacks queued before this call (not
    /// those they queue themselves) and returns how many ran.
    @discardableResult
    public static func completeGracePeriod() -> Int {
        if isInReadSection {
            rcuMisuse("\(name): completeGracePeriod() inside a read section")
        }
        if state.stages.withLock({ $0.isActive }) { endGracePeriod() }
        startGracePeriod()
        endGracePeriod()
        let due = state.stages.withLock { stages -> [ManualCallback] in
            defer { stages.ready = [] }
            return stages.ready
        }
        for callback in due {
            callback.body()
            state.accounting.callbackRan()
        }
        return due.count
    }

    /// Forgets every callback, retired object, reader and grace period of
    /// the domain, for a test that starts over after a failure. Callbacks
    /// and retired objects are dropped without running.
    public static func reset() {
        state.stages.withLock { $0 = ManualStages() }
    }

    /// The domain's read sections, grace period and callbacks, by stage.
    public static var snapshot: ManualRCUSnapshot {
        state.stages.withLock { stages in
            ManualRCUSnapshot(
                readers: Set(stages.readDepth.keys), isGracePeriodActive: stages.isActive,
                waitingFor: stages.waitingFor, queued: stages.queued.map(\.id),
                waiting: stages.waiting.map(\.id), ready: stages.ready.map(\.id))
        }
    }

    /// The calling thread, as ``ManualRCUSnapshot`` names it.
    public static var currentThread: UInt { UInt(bitPattern: Int(bitPattern: pthread_self())) }

    private static var state: ManualDomainState { ManualDomainState.of(ObjectIdentifier(Domain.self)) }
}

/// What a ``ManualRCU`` domain holds at one moment: the threads inside read
/// sections, the grace period in progress and the threads it waits for, and
/// callback IDs by stage (`rcuReaders`, `rcuGp`, `rcuCallbacks` of
/// `Spec/RCU.tla`).
public struct ManualRCUSnapshot: Equatable, Sendable {
    /// The threads inside a read section (``ManualRCU/currentThread`` values).
    public var readers: Set<UInt>
    /// Whether a grace period has started and not ended.
    public var isGracePeriodActive: Bool
    /// The threads the grace period in progress still waits for: inside a
    /// read section when it started, and not out of it since.
    public var waitingFor: Set<UInt>
    /// Callbacks queued since the last grace period started.
    public var queued: [Int]
    /// Callbacks waiting for the grace period in progress.
    public var waiting: [Int]
    /// Callbacks whose grace period has ended, not yet run
    /// (``ManualRCU/runReadyCallback(_:)`` runs one).
    public var ready: [Int]
}

struct ManualCallback: Sendable {
    let id: Int
    let body: @Sendable () -> Void
}

struct ManualRetired: @unchecked Sendable {
    // The last reference, moved here by retire(); only released once.
    let object: Unmanaged<AnyObject>
}

struct ManualStages: Sendable {
    var readDepth: [UInt: Int] = [:]
    var isActive = false
    var waitingFor: Set<UInt> = []
    var nextID = 0
    var queued: [ManualCallback] = []
    var waiting: [ManualCallback] = []
    var ready: [ManualCallback] = []
    var retiredQueued: [ManualRetired] = []
    var retiredWaiting: [ManualRetired] = []

    var isIdle: Bool {
        queued.isEmpty && waiting.isEmpty && ready.isEmpty && retiredQueued.isEmpty && retiredWaiting.isEmpty
    }
}

/// One domain's stages and accounting. Generic types cannot have stored
/// static properties, so the domains live in one table.
final class ManualDomainState: Sendable {
    let accounting = GracePeriodAccounting()
    let stages = Lock(ManualStages())

    private static let domains = Lock<[ObjectIdentifier: ManualDomainState]>([:])

    static func of(_ domain: ObjectIdentifier) -> ManualDomainState {
        domains.withLock { domains in
            if let state = domains[domain] { return state }
            let state = ManualDomainState()
            domains[domain] = state
            return state
        }
    }
}
