import Synchronization
import URCU

/// The table of context slots (`struct kioctx_table`): a fixed number of
/// RCU-protected slots, replaced as a whole by a larger copy when every slot
/// is taken (`ioctx_add_table`).
///
/// The slots live in memory of their own, returned by ``free()`` once the
/// table has been replaced and a grace period of `Flavor` has passed: a
/// reader that reaches them later reads freed memory (AddressSanitizer
/// reports it) and finds the table poisoned (every build reports it).
package final class SlotTable<Flavor: RCUFlavor>: @unchecked Sendable {
    // @unchecked: the slots are RCU pointers (readers need a section, writers
    // the table lock); the buffer itself is written only by init and free().
    private let slots: UnsafeMutableBufferPointer<RCUPointer<Context<Flavor>, Flavor>>
    /// Set by ``free()`` before the slots' memory goes: the poison readers check.
    private let freed = Atomic<Bool>(false)
    /// The context table's counters and recorder.
    private let services: TableServices
    private var counters: LifecycleCounters { services.counters }
    /// The number of slots.
    package let capacity: Int

    init(capacity: Int, services: TableServices) {
        self.capacity = capacity
        self.services = services
        slots = .allocate(capacity: capacity)
        for index in 0..<capacity { slots.initializeElement(at: index, to: RCUPointer()) }
    }

    deinit {
        // The current table goes with the context table (no reader can be
        // inside it then); a replaced one has been freed already.
        if !freed.load(ordering: .relaxed) { releaseSlots() }
    }

    /// The context in `slot`, inside a read section (the second of a
    /// lookup's two dereferences, the table pointer being the first).
    func context(at slot: Int, in section: borrowing ReadSection<Flavor>) -> Context<Flavor>? {
        guard (0..<capacity).contains(slot) else { return nil }
        // Checked before the slot is read (what a freed table's slot holds
        // is garbage), and again before the context is touched, for a free
        // that ran meanwhile.
        checkNotFreed()
        return slots[slot].dereference(in: section) { context in
            checkNotFreed()
            return context
        }
    }

    /// The identity of the context in `slot`, or nil, for a comparison or
    /// a nil test (`rcu_access_pointer`).
    func occupant(ofSlot slot: Int) -> ObjectIdentifier? {
        (0..<capacity).contains(slot) ? slots[slot].access() : nil
    }

    /// The first slot holding no context, on the update side (the table
    /// lock held).
    var firstFreeSlot: Int? {
        (0..<capacity).first { occupant(ofSlot: $0) == nil }
    }

    /// Publishes `context` in `slot` (`rcu_assign_pointer`); the table
    /// lock is held.
    func publish(_ context: Context<Flavor>, in slot: Int) {
        slots[slot].assign(context)
    }

    /// Clears `slot` (`RCU_INIT_POINTER(…, NULL)`); the table lock is held.
    func unpublish(_ slot: Int) {
        slots[slot].initialize(to: nil)
    }

    /// The contexts in the table, on the update side (the table lock held).
    var contexts: [Context<Flavor>] {
        (0..<capacity).compactMap { slots[$0].dereferenceProtected(by: true) }
    }

    /// Copies every slot of `old` into the same slot here, before this table
    /// is published (so `RCU_INIT_POINTER` suffices). The caller holds the
    /// table lock, or the copy can miss a publish or an unpublish that
    /// happens meanwhile (the `TableGrowthLosesSlot` bug).
    package func copySlots(from old: SlotTable<Flavor>) {
        precondition(old.capacity <= capacity, "a table grows, never shrinks")
        for index in 0..<old.capacity {
            slots[index].initialize(to: old.slots[index].dereferenceProtected(by: true))
        }
    }

    /// Whether ``free()`` has run.
    var isFreed: Bool { freed.load(ordering: .acquiring) }

    /// Frees the slots (the `kfree` that `kfree_rcu` runs): only after a
    /// grace period of `Flavor` that started once the table was replaced.
    package func free() {
        services.step(.tableFreed(capacity: capacity)) {
            guard !freed.exchange(true, ordering: .acquiringAndReleasing) else {
                rcuMisuse("ContextTable: a slot table freed twice")
            }
            releaseSlots()
            counters.pendingFrees.decrement()
        }
    }

    private func releaseSlots() {
        // Drops the table's own references to its contexts: the table that
        // replaced this one holds references of its own.
        slots.deinitialize()
        slots.deallocate()
    }

    private func checkNotFreed() {
        if isFreed {
            counters.useAfterFree.increment()
            rcuMisuse("ContextTable: a lookup read a slot table after it was freed (use after free)")
        }
    }
}

/// How a full ``ContextTable`` grows and how the table it replaces is freed.
/// A protocol only so that the tests can put two bugs in its place, in
/// their own targets: a copy that misses concurrent updates, and an old
/// table freed while readers may still be in it.
package protocol TableGrowth: Sendable {
    /// Replaces `full`, the table of `table` in which no slot was free, by
    /// a larger one holding the same contexts; does nothing if `full` has
    /// been replaced already.
    func grow<Flavor: RCUFlavor>(_ table: ContextTable<Flavor>, from full: SlotTable<Flavor>)

    /// Arranges for `old`, just replaced, to be freed once no reader of
    /// `Flavor` can be inside it.
    func scheduleFree<Flavor: RCUFlavor>(of old: SlotTable<Flavor>, _ flavor: Flavor.Type)
}

/// The kernel's `ioctx_add_table`: the larger table is allocated without
/// the lock, then filled and published under it, so that no publish or
/// unpublish can happen between the copy and the switch; the old table is
/// freed after a grace period of the table's flavor (`kfree_rcu`), never
/// one of `PercpuRef`'s.
package struct GrowUnderTableLock: TableGrowth {
    package init() {}

    package func grow<Flavor: RCUFlavor>(_ table: ContextTable<Flavor>, from full: SlotTable<Flavor>) {
        let larger = table.makeLargerTable(than: full)
        table.withTableLock {
            // Another create may have grown the table since it was full.
            guard table.isCurrent(full) else { return }
            larger.copySlots(from: full)
            table.install(larger, replacing: full)
        }
    }

    package func scheduleFree<Flavor: RCUFlavor>(of old: SlotTable<Flavor>, _ flavor: Flavor.Type) {
        Flavor.call { old.free() }
    }
}
