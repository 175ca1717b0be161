import Synchronization

/// What a ``ContextTable`` has done, counted.
public struct LifecycleStatistics: Sendable, Equatable {
    /// Contexts created and published.
    public var created = 0
    /// Creates that failed for want of budget or of a free slot (each gave
    /// back what it had taken).
    public var failedCreates = 0
    /// Contexts destroyed (unpublished and killed).
    public var destroyed = 0
    /// Contexts freed, each after its grace period.
    public var freed = 0
    /// Contexts allocated and not yet freed.
    public var live = 0
    /// Requests submitted.
    public var submitted = 0
    /// Requests finished: completed, or cancelled (which completes them
    /// with ``CompletionEvent/cancelled``).
    public var completed = 0
    /// Requests still in flight that a context's teardown cancelled.
    public var cancelled = 0
    /// Readers that reached a freed context. Must be zero.
    public var useAfterFree = 0
    /// Frees queued behind a grace period that have not run yet: contexts'
    /// (the double bounce) and replaced slot tables'.
    public var pendingFrees = 0
    /// Times the slot table grew (each replaced table is freed after a
    /// grace period, counted in ``pendingFrees`` until then).
    public var tableGrowths = 0
    /// Context objects still in memory: a callback (a slot's retirement, a
    /// free) or a caller still holds them.
    public var objects = 0
    /// Requests charged against the budget by live contexts.
    public var budgetInUse = 0

    /// All counts zero.
    public init() {}

    /// Nothing leaked: every context created was freed and its object
    /// deallocated, no free or callback is pending, the budget is back to
    /// zero, and no reader reached a freed context.
    public var isClean: Bool {
        live == 0 && objects == 0 && pendingFrees == 0 && budgetInUse == 0 && useAfterFree == 0
            && created == freed
    }

    /// Adds another table's statistics (the torture run sums its rounds'
    /// tables): a leak in any of them leaves the sum unclean. Beside the
    /// fields, so that a new one is not left out.
    package mutating func add(_ other: LifecycleStatistics) {
        created += other.created
        failedCreates += other.failedCreates
        destroyed += other.destroyed
        freed += other.freed
        live += other.live
        submitted += other.submitted
        completed += other.completed
        cancelled += other.cancelled
        useAfterFree += other.useAfterFree
        pendingFrees += other.pendingFrees
        tableGrowths += other.tableGrowths
        objects += other.objects
        budgetInUse += other.budgetInUse
    }
}

final class LifecycleCounter: Sendable {
    private let value = Atomic<Int>(0)
    func increment() { value.wrappingAdd(1, ordering: .relaxed) }
    /// Releasing: whoever reads the lower value sees what the thread did
    /// before (a teardown counts its free before `live` drops).
    func decrement() { value.wrappingSubtract(1, ordering: .releasing) }
    var current: Int { value.load(ordering: .acquiring) }
}

final class LifecycleCounters: Sendable {
    let created = LifecycleCounter()
    let failedCreates = LifecycleCounter()
    let destroyed = LifecycleCounter()
    let freed = LifecycleCounter()
    let live = LifecycleCounter()
    let submitted = LifecycleCounter()
    let completed = LifecycleCounter()
    let cancelled = LifecycleCounter()
    let useAfterFree = LifecycleCounter()
    let pendingFrees = LifecycleCounter()
    let objects = LifecycleCounter()
    let tableGrowths = LifecycleCounter()

    func snapshot(budgetInUse: Int) -> LifecycleStatistics {
        var statistics = LifecycleStatistics()
        // The counters that settle first: once they read zero, every
        // counter the teardowns changed before them is up to date below.
        statistics.live = live.current
        statistics.pendingFrees = pendingFrees.current
        statistics.objects = objects.current
        statistics.created = created.current
        statistics.failedCreates = failedCreates.current
        statistics.destroyed = destroyed.current
        statistics.freed = freed.current
        statistics.submitted = submitted.current
        statistics.completed = completed.current
        statistics.cancelled = cancelled.current
        statistics.useAfterFree = useAfterFree.current
        statistics.tableGrowths = tableGrowths.current
        statistics.budgetInUse = budgetInUse
        return statistics
    }
}
