import ContextTable
#if canImport(Glibc)
import Glibc
#endif
import Synchronization
import URCU

// The negative controls of the table's growth, shared by the growth tests
// (Tests/ContextTableTests/GrowthTests.swift) and the model-based test
// (Tests/ConformanceTests/TableGrowthModelTests.swift).

/// The bug `Lifecycle_OldTableFreedWithoutGracePeriod`: the replaced table
/// is freed at once (as if `kfree` stood where `kfree_rcu` does), under
/// readers that loaded it.
package struct FreeOldTableWithoutGracePeriod: TableGrowth {
    package init() {}

    package func grow<Flavor: RCUFlavor>(_ table: ContextTable<Flavor>, from full: SlotTable<Flavor>) {
        GrowUnderTableLock().grow(table, from: full)
    }

    package func scheduleFree<Flavor: RCUFlavor>(of old: SlotTable<Flavor>, _ flavor: Flavor.Type) {
        old.free()
    }
}

/// The bug `Lifecycle_TableGrowthLosesSlot`: the slots are copied before the
/// table lock is taken, so a publish or an unpublish between the copy and
/// the switch is lost. `betweenCopyAndPublish` runs such updates, once, in
/// that window; `pausing` holds every growth there for 1 ms, so that
/// other threads' updates fall into it by chance (random runs).
package final class CopySlotsOutsideTableLock: TableGrowth {
    private let pausing: Bool

    package init(pausing: Bool = false) { self.pausing = pausing }

    private let interleaved = Lock<(@Sendable () -> Void)?>(nil)

    package func betweenCopyAndPublish(_ updates: @escaping @Sendable () -> Void) {
        interleaved.withLock { $0 = updates }
    }

    package func grow<Flavor: RCUFlavor>(_ table: ContextTable<Flavor>, from full: SlotTable<Flavor>) {
        let larger = table.makeLargerTable(than: full)
        larger.copySlots(from: full)
        interleaved.withLock { $0.take() }?()
        if pausing { usleep(1_000) }
        table.withTableLock {
            guard table.isCurrent(full) else { return }
            table.install(larger, replacing: full)
        }
    }

    package func scheduleFree<Flavor: RCUFlavor>(of old: SlotTable<Flavor>, _ flavor: Flavor.Type) {
        GrowUnderTableLock().scheduleFree(of: old, flavor)
    }
}
