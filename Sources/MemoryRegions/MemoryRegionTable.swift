import PercpuRef
import Synchronization
import URCU

/// The RDMAVT memory-region lifecycle (`drivers/infiniband/sw/rdmavt/mr.c`),
/// the third change of the 2018 percpu_ref audit, in Swift.
///
/// Regions live in RCU-protected slots (rdmavt's `lkey_table`). A lookup
/// (`rvt_lkey_ok`) takes a *plain* `PercpuRef.get()` on the region it
/// finds inside a read section, not `tryGetLive`. That is safe only
/// because deregistration (`rvt_dereg_mr`) keeps the count above zero until
/// a grace period of `Flavor` that started after the unpublish has ended:
///
/// ```text
/// deregister ─▶ unpublish slot (initialize(to: nil)) ─▶ drop dependents
///   ─▶ synchronize (Flavor)      every reader that found the region has
///                                taken its reference and left its section
///   ─▶ put the table's reference ─▶ kill (drops the owner's)
///   ─▶ wait for the release (count zero), at most the timeout ─▶ free
/// ```
///
/// rdmavt itself drops both references before its `synchronize_rcu()`;
/// `Spec/MemoryRegion.tla` shows that order lets a reader's get revive a
/// count that already reached zero unless percpu_ref's own, internal grace
/// period happens to cover the table's readers (row
/// `MemoryRegion_PutBeforeGracePeriod`). Never rely on that one.
///
/// On timeout, deregistration reports `memory region … still has N
/// references after T s` on standard error and throws
/// ``MemoryRegionError/stillReferenced(key:references:seconds:)``, freeing
/// nothing; the region stays unpublished and dead, and may be deregistered
/// again later (only the wait is left then).
public final class MemoryRegionTable<Flavor: RCUFlavor>: Sendable {
    final class Slot: Sendable {
        let region = RCUPointer<MemoryRegion<Flavor>, Flavor>()
    }

    let slots: [Slot]
    /// Serialises updaters of the slots (rdmavt's `rkt->lock`), and holds
    /// each slot's generation.
    private let tableLock: Lock<[UInt64]>
    /// How long a deregistration waits for the last reference (rdmavt: 5 s).
    public let deregistrationTimeout: Double
    let teardown: any MemoryRegionTeardown
    /// Test hooks: inside a lookup's read section between the load and the
    /// get, at the start of a region's release, and at each deregistration
    /// step (named as `Spec/MemoryRegion.tla`'s `Order` names it).
    let lookupLoaded: (@Sendable (MemoryRegion<Flavor>) -> Void)?
    let releaseStarted: (@Sendable () -> Void)?
    let stepTaken: (@Sendable (String) -> Void)?
    let recorder: (any MemoryRegionRecorder)?

    /// - Parameters:
    ///   - capacity: the number of slots (rdmavt's `lkey_table_size`).
    ///   - deregistrationTimeout: how long ``deregister(_:)-1cmxe`` waits for the
    ///     last reference before it gives up (seconds).
    public convenience init(capacity: Int, deregistrationTimeout: Double = 5) {
        self.init(capacity: capacity, deregistrationTimeout: deregistrationTimeout, teardown: SynchronizeThenDrop())
    }

    /// A table whose deregistrations run `teardown` (the tests' negative
    /// controls), with hooks for tests that stop a thread at a chosen point,
    /// and whose every step `recorder` records.
    package init(
        capacity: Int, deregistrationTimeout: Double, teardown: any MemoryRegionTeardown,
        lookupLoaded: (@Sendable (MemoryRegion<Flavor>) -> Void)? = nil,
        releaseStarted: (@Sendable () -> Void)? = nil,
        stepTaken: (@Sendable (String) -> Void)? = nil,
        recorder: (any MemoryRegionRecorder)? = nil
    ) {
        precondition(capacity > 0, "MemoryRegionTable: capacity must be positive")
        slots = (0..<capacity).map { _ in Slot() }
        tableLock = Lock(Array(repeating: 0, count: capacity))
        self.deregistrationTimeout = deregistrationTimeout
        self.teardown = teardown
        self.lookupLoaded = lookupLoaded
        self.releaseStarted = releaseStarted
        self.stepTaken = stepTaken
        self.recorder = recorder
    }

    // MARK: Registration

    /// Registers a region of `length` bytes (`rvt_reg_user_mr` →
    /// `rvt_alloc_lkey`): the caller holds the owner's reference through the
    /// returned handle, the table its own, and the region is published.
    ///
    /// - Parameters:
    ///   - length: the region's size in bytes, more than zero.
    ///   - atomicCount: start the region's count in atomic mode
    ///     (`PERCPU_REF_INIT_ATOMIC`), where no percpu_ref grace period
    ///     exists at all.
    public func register(length: Int, atomicCount: Bool = false) throws(MemoryRegionError) -> MemoryRegion<Flavor> {
        guard length > 0 else { throw .invalidLength }
        let region = try tableLock.withLock { generations throws(MemoryRegionError) -> MemoryRegion<Flavor> in
            guard let slot = slots.indices.first(where: { slots[$0].region.access() == nil }) else {
                throw .tableFull
            }
            generations[slot] += 1
            let region = MemoryRegion<Flavor>(
                table: ObjectIdentifier(self), key: MemoryRegionKey(slot: slot, generation: generations[slot]),
                length: length, atomicCount: atomicCount, releaseStarted: releaseStarted, recorder: recorder)
            recorder.step(.registered(region.key, atomicCount: atomicCount)) {
                // The table's reference, then the release store that
                // publishes the region (rcu_assign_pointer).
                region.references.get()
                slots[slot].region.assign(region)
            }
            return region
        }
        return region
    }

    // MARK: Lookup

    /// Finds the region named `key` and takes a reference on it
    /// (`rvt_lkey_ok`), or nil if no registered region has that key.
    public func lookup(_ key: MemoryRegionKey) -> MemoryRegionReference<Flavor>? {
        guard slots.indices.contains(key.slot) else { return nil }
        let found = Flavor.read { section -> MemoryRegion<Flavor>? in
            recorder.step(.lookupReadLock) {}
            defer { recorder.step(.lookupReadUnlock) {} }
            var loaded: MemoryRegion<Flavor>?
            recorder.step {
                loaded = slots[key.slot].region.dereference(in: section, { $0 })
                guard loaded?.key == key else {
                    loaded = nil
                    return .lookupMiss(key)
                }
                return .lookupLoad(key)
            }
            guard let region = loaded else { return nil }
            lookupLoaded?(region)
            // A plain get, as rvt_lkey_ok's: the count cannot be zero here,
            // because deregistration keeps the table's and the owner's
            // references until a grace period that started after the
            // unpublish, which waits for this section.
            recorder.step(.lookupGet(key)) { region.references.get() }
            return region
        }
        guard let found else { return nil }
        found.checkAlive(during: "lookup")
        return MemoryRegionReference(region: found)
    }

    // MARK: Deregistration

    /// Deregisters `region` (`rvt_dereg_mr`) and frees it once its last
    /// reference is gone, waiting at most ``deregistrationTimeout``.
    ///
    /// Blocks the calling thread for a grace period and the wait (an online
    /// QSBR caller goes offline meanwhile); async code uses `await
    /// deregister(_:)`. Must not be called inside a read section of
    /// `Flavor`, nor while holding a reference to `region` (the wait would
    /// time out).
    ///
    /// - Throws: ``MemoryRegionError/stillReferenced(key:references:seconds:)``
    ///   if references remain after the timeout: nothing is freed, and the
    ///   region may be deregistered again.
    @available(*, noasync, message: "blocks the thread; use 'await deregister(_:)' in async code")
    public func deregister(_ region: MemoryRegion<Flavor>) throws(MemoryRegionError) {
        if let steps = beginDeregistration(of: region) {
            if teardown.synchronizes {
                steps.take(.syncStart) {}
                Flavor.synchronize()
                steps.take(.syncEnd) {}
            }
            if finishDroppingReferences(steps) { return }
        }
        stepTaken?("wait")
        let released = whileBlocked { waitForRelease(of: region) }
        try finishDeregistration(of: region, released: released)
    }

    /// ``deregister(_:)`` for async code: suspends for the grace period and
    /// the wait instead of blocking a thread of the cooperative pool.
    public func deregister(_ region: MemoryRegion<Flavor>) async throws(MemoryRegionError) {
        if let steps = beginDeregistration(of: region) {
            if teardown.synchronizes {
                steps.take(.syncStart) {}
                await Flavor.synchronize()
                steps.take(.syncEnd) {}
            }
            if finishDroppingReferences(steps) { return }
        }
        stepTaken?("wait")
        let released = await onThreadOfItsOwn { self.waitForRelease(of: region) }
        try finishDeregistration(of: region, released: released)
    }

    /// Claims `region` and runs the teardown's steps before the grace
    /// period; nil if they already ran (a retry after a timeout).
    private func beginDeregistration(of region: MemoryRegion<Flavor>) -> TeardownSteps<Flavor>? {
        if region.table != ObjectIdentifier(self) {
            rcuMisuse("MemoryRegionTable: deregister() of region \(region.key), which belongs to another table")
        }
        // A retry has no grace period to catch this, and its wait could be
        // for a percpu_ref switch this very section holds up.
        if Flavor.isInReadSection {
            rcuMisuse("MemoryRegionTable: deregister() of region \(region.key) inside a read section of \(Flavor.name); its grace period would wait for itself")
        }
        var firstTime = false
        recorder.step(.deregistrationClaimed(region.key)) { firstTime = region.beginDeregistration() }
        guard firstTime else { return nil }
        let steps = TeardownSteps(table: self, region: region)
        teardown.beforeGracePeriod(steps)
        return steps
    }

    /// The teardown's steps after the grace period; returns whether the
    /// region was freed without waiting (only a negative control does that).
    private func finishDroppingReferences(_ steps: TeardownSteps<Flavor>) -> Bool {
        let next = teardown.afterGracePeriod(steps)
        steps.region.markReferencesDropped()
        if next == .freeAtOnce {
            recorder.step(.freed(steps.region.key)) { steps.region.free() }
            return true
        }
        return false
    }

    /// Waits at most ``deregistrationTimeout`` for `region`'s release; a
    /// wait that gives up is the spec's `Timeout` (recorded around the
    /// wait, where it gave up: a release just after must not precede it).
    private func waitForRelease(of region: MemoryRegion<Flavor>) -> Bool {
        var released = false
        recorder.step {
            released = region.released.wait(seconds: deregistrationTimeout)
            return released ? nil : .timedOut(region.key)
        }
        return released
    }

    private func finishDeregistration(of region: MemoryRegion<Flavor>, released: Bool) throws(MemoryRegionError) {
        guard released else {
            region.markTimedOut()
            let error = MemoryRegionError.stillReferenced(
                key: region.key, references: region.references.abstractState.count, seconds: deregistrationTimeout)
            writeStandardError("swift-urcu: \(error)\n")
            throw error
        }
        recorder.step(.freed(region.key)) { region.free() }
    }

    /// Empties `region`'s slot (`rvt_free_lkey`): readers already inside
    /// their section may still find it; later ones do not.
    func unpublish(_ region: MemoryRegion<Flavor>) {
        tableLock.withLock { _ in
            let slot = slots[region.key.slot]
            // Storing nil needs no ordering (RCU_INIT_POINTER); the object
            // itself is retired after a grace period.
            if slot.region.access() == ObjectIdentifier(region) { slot.region.initialize(to: nil) }
        }
    }
}

/// A reference on a region, from ``MemoryRegionTable/lookup(_:)``
/// (rdmavt's `rvt_get_mr` in `rvt_lkey_ok`). Dropping it puts the
/// reference (`rvt_put_mr`); it cannot be copied, so it is put once.
public struct MemoryRegionReference<Flavor: RCUFlavor>: ~Copyable, Sendable {
    private var region: MemoryRegion<Flavor>?

    init(region: MemoryRegion<Flavor>) { self.region = region }

    deinit { region?.put() }

    private var held: MemoryRegion<Flavor> {
        // Set from init until a consuming method ends the reference.
        region.unsafelyUnwrapped
    }

    /// The key of the region this reference holds.
    public var key: MemoryRegionKey { held.key }
    /// The region's size in bytes.
    public var length: Int { held.length }

    /// Lends the region's memory to `body`.
    public func withBytes<Result>(_ body: (UnsafeMutableRawBufferPointer) throws -> Result) rethrows -> Result {
        try held.withBytes(body)
    }

    /// Drops the reference now.
    public consuming func put() {}

    /// Hands the reference to the region itself, for a dependent that uses
    /// it past this scope (rdmavt: a queue pair's `rvt_sge`).
    /// Deregistration drops these first (`rvt_dereg_clean_qps`); once it
    /// has, this puts the reference at once.
    public consuming func keepInRegion() {
        let region = held
        self.region = nil
        region.adopt()
    }
}
