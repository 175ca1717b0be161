import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import PercpuRef
import Synchronization
import URCU

/// A context's name: its slot in the table and the generation that slot
/// had when the context was created (the kernel's `user_id`), so a stale
/// ID never reaches a later context in the same slot.
public struct ContextID: Hashable, Sendable, CustomStringConvertible {
    /// The table slot the context was published in.
    public let slot: Int
    /// How many contexts that slot had held when this one was published,
    /// itself included.
    public let generation: UInt64

    public var description: String { "ctx\(slot).\(generation)" }
}

/// Why an operation of ``ContextTable`` failed.
public enum ContextError: Error, Equatable, Sendable {
    /// `maxRequests` is not in `1...ContextTable.maxRequestsPerContext`.
    case invalidMaxRequests
    /// The request budget (the kernel's `aio_max_nr`) has no room
    /// (`-EAGAIN` from `io_setup`).
    case budgetExhausted
    /// Every table slot is taken.
    case tableFull
    /// No live context has that ID (`-EINVAL`).
    case noSuchContext
    /// The context's completion ring has no free slot (`-EAGAIN` from
    /// `io_submit`).
    case ringFull
}

/// The seeds' fs/aio context lifecycle (`struct kioctx`), in Swift.
///
/// A table of RCU-protected slots holds contexts. Each context has two
/// `PercpuRef`s: `users` counts lookups in progress (and the table's own
/// reference), `reqs` counts requests in flight. The lifecycle:
///
/// ```text
/// destroy ─▶ unpublish slot, return budget, kill(users)
///   users reaches zero ─▶ cancel requests, kill(reqs)
///     reqs reaches zero ─▶ call_rcu(Flavor) ─▶ cleanup queue ─▶ free
///                          └── explicit grace period: lookups that found
///                              the context under RCU have all left
/// ```
///
/// The free is the "double bounce" of the 2018 fix: an explicit grace
/// period of the table's flavor (`percpu_ref`'s own grace period is internal
/// and does not protect the table's readers), then a context that may block.
/// Teardown waits on `reqs`, never on the completion ring, whose indices
/// live in memory the user can write (the 2013 fix). A failed create gives
/// back exactly what it took (the 2013 `aio_nr_sub` fix).
public final class ContextTable<Flavor: RCUFlavor>: Sendable {
    /// The slots (`mm->ioctx_table`): replaced by a larger copy when full,
    /// up to ``maximumCapacity`` slots.
    let table: RCUPointer<SlotTable<Flavor>, Flavor>
    /// Serialises updaters of the slots and the table's growth (the
    /// kernel's `mm->ioctx_lock`), and holds each slot's generation.
    private let tableLock: Lock<[UInt64]>
    /// The most slots the table may grow to.
    public let maximumCapacity: Int
    private let growth: any TableGrowth
    /// Requests charged against the budget (`aio_nr`), and its limit
    /// (`aio_max_nr`).
    private let budget: Lock<Int>
    /// The limit on the total `maxRequests` of live contexts (`aio_max_nr`).
    public let requestBudget: Int
    let services: TableServices
    var counters: LifecycleCounters { services.counters }

    /// The largest `maxRequests` of one context: its ring is allocated up
    /// front (the kernel caps `nr_events` the same way).
    public static var maxRequestsPerContext: Int { 1 << 20 }

    /// - Parameters:
    ///   - capacity: the number of table slots to start with.
    ///   - maximumCapacity: the most slots the table may grow to (by
    ///     default `capacity`: the table never grows). A create that finds
    ///     every slot taken doubles the table, up to this bound; beyond it,
    ///     the create fails with ``ContextError/tableFull``.
    ///   - requestBudget: the total `maxRequests` of all live contexts may
    ///     not exceed this (`aio_max_nr`).
    ///   - cleanupExecutor: where contexts are freed, after their grace
    ///     period (by default, a serial `DispatchQueue` of the table's).
    public convenience init(
        capacity: Int, maximumCapacity: Int? = nil, requestBudget: Int, cleanupExecutor: (any BlockingExecutor)? = nil
    ) {
        self.init(
            capacity: capacity, maximumCapacity: maximumCapacity, requestBudget: requestBudget,
            cleanupExecutor: cleanupExecutor, reclamation: DoubleBounce(), recorder: nil)
    }

    /// A table whose every lifecycle step is recorded by `recorder`, whose
    /// contexts are reclaimed by `reclamation`, and which grows by `growth`.
    package init(
        capacity: Int, maximumCapacity: Int? = nil, requestBudget: Int, cleanupExecutor: (any BlockingExecutor)?,
        reclamation: any ContextReclamation, recorder: (any LifecycleRecorder)?,
        growth: any TableGrowth = GrowUnderTableLock()
    ) {
        let maximumCapacity = maximumCapacity ?? capacity
        precondition(capacity > 0 && requestBudget > 0, "ContextTable needs a positive capacity and budget")
        precondition(maximumCapacity >= capacity, "ContextTable: maximumCapacity is below capacity")
        budget = Lock(0)
        self.requestBudget = requestBudget
        self.maximumCapacity = maximumCapacity
        self.growth = growth
        services = TableServices(
            cleanup: cleanupExecutor ?? DispatchQueue(label: "urcu.context-table.cleanup"),
            reclamation: reclamation, recorder: recorder)
        table = RCUPointer(SlotTable(capacity: capacity, services: services))
        tableLock = Lock(Array(repeating: 0, count: capacity))
    }

    /// Destroys the contexts still in the table (the kernel's `exit_aio`);
    /// their teardown completes on its own, after their grace periods.
    /// `shutdown(timeoutSeconds:)` also waits for it.
    deinit {
        for id in liveContexts { try? destroy(id) }
    }

    /// The number of slots the table has now.
    public var capacity: Int { withTableLock { currentTable.capacity } }

    /// Creates a context able to hold `maxRequests` requests in flight
    /// (`ioctx_alloc`). Every failure gives back what was taken before it.
    public func create(maxRequests: Int) throws(ContextError) -> ContextID {
        try create(maxRequests: maxRequests, atomicReferences: false)
    }

    /// `create(maxRequests:)`, with the context's refs starting in atomic
    /// mode if `atomicReferences` (the spec's `RefInitModes`).
    package func create(maxRequests: Int, atomicReferences: Bool) throws(ContextError) -> ContextID {
        let tag = services.recorder?.nextContextTag() ?? 0
        guard (1...Self.maxRequestsPerContext).contains(maxRequests) else {
            services.step(.createFailsEarly(context: tag)) {}
            throw .invalidMaxRequests
        }
        let reserved = services.step { () -> (Context<Flavor>?, LifecycleEvent?) in
            let charged = budget.withLock { inUse -> Bool in
                // Written so that it cannot overflow (the kernel's check
                // tests for wrap-around explicitly).
                guard maxRequests <= requestBudget - inUse else { return false }
                inUse += maxRequests
                return true
            }
            guard charged else { return (nil, .createFailsBudget(context: tag)) }
            let context = Context<Flavor>(
                tag: tag, maxRequests: maxRequests, atomicReferences: atomicReferences, services: services)
            return (context, .createReserve(context: tag, atomicReferences: atomicReferences))
        }
        guard let context = reserved else {
            counters.failedCreates.increment()
            throw .budgetExhausted
        }
        let published = services.step { () -> (ContextID?, LifecycleEvent?) in
            guard let id = publish(context) else {
                // The 2013 fix: a failed insert must give the budget back.
                returnBudget(maxRequests)
                context.abandon()
                return (nil, .createFailsTableInsert(context: tag))
            }
            return (id, .createPublish(context: tag, slot: id.slot))
        }
        guard let published else {
            counters.failedCreates.increment()
            throw .tableFull
        }
        counters.created.increment()
        return published
    }

    /// `ioctx_add_table`: publishes `context` in the first empty slot,
    /// found and filled under the table lock, growing the table while every
    /// slot is taken and the bound allows. Nil: the table is full.
    private func publish(_ context: Context<Flavor>) -> ContextID? {
        while true {
            let outcome = tableLock.withLock { generations -> Result<ContextID, FullTable> in
                let slots = currentTable
                guard let slot = slots.firstFreeSlot else { return .failure(FullTable(slots: slots)) }
                if generations.count < slots.capacity {
                    generations += repeatElement(0, count: slots.capacity - generations.count)
                }
                generations[slot] += 1
                let id = ContextID(slot: slot, generation: generations[slot])
                context.id = id
                slots.publish(context, in: slot)
                return .success(id)
            }
            switch outcome {
            case .success(let id):
                return id
            case .failure(let full):
                guard full.slots.capacity < maximumCapacity else { return nil }
                growth.grow(self, from: full.slots)
            }
        }
    }

    /// The table, on the update side: the table lock is held.
    private var currentTable: SlotTable<Flavor> {
        // Never nil: the table is replaced, never cleared.
        table.dereferenceProtected(by: true)!
    }

    /// Runs `body` with the table lock held (`spin_lock(&mm->ioctx_lock)`).
    package func withTableLock<Result>(_ body: () -> Result) -> Result {
        tableLock.withLock { _ in body() }
    }

    /// Whether `slots` is the table readers find now; the table lock is held.
    package func isCurrent(_ slots: SlotTable<Flavor>) -> Bool {
        currentTable === slots
    }

    /// A new, empty table twice as large as `full`, within the bound.
    package func makeLargerTable(than full: SlotTable<Flavor>) -> SlotTable<Flavor> {
        SlotTable(capacity: min(2 * full.capacity, maximumCapacity), services: services)
    }

    /// Publishes `larger`, which holds `old`'s contexts, in place of `old`
    /// (`rcu_assign_pointer(mm->ioctx_table, …)`), and retires `old` through
    /// the table's growth (`kfree_rcu`). The table lock is held.
    package func install(_ larger: SlotTable<Flavor>, replacing old: SlotTable<Flavor>) {
        precondition(isCurrent(old), "ContextTable: replacing a table that is not the current one")
        // One recorded step, taking effect at the assign: the copy before
        // it ran under the same hold of the lock (GrowUnderTableLock), so
        // no publish or unpublish came between.
        services.step(.tableGrown(capacity: larger.capacity)) {
            table.assign(larger)
            counters.tableGrowths.increment()
            counters.pendingFrees.increment()
            growth.scheduleFree(of: old, Flavor.self)
        }
    }

    /// Finds a live context and takes a `users` reference on it
    /// (`lookup_ioctx`).
    ///
    /// The context is found under a read section of `Flavor`, where its
    /// count may already be on its way to zero: only `tryGetLive` may take
    /// the reference (a plain `get` could revive a context being destroyed).
    public func lookup(_ id: ContextID) -> ContextLease<Flavor>? {
        let found = Flavor.read { section -> Context<Flavor>? in
            // Recorded inside the section, so that the recorded section
            // lies within the real one (Spec/TraceLifecycle.tla).
            services.step(.lookupReadLock) {}
            defer { services.step(.lookupReadUnlock) {} }
            let loaded = services.step { () -> (Context<Flavor>?, LifecycleEvent?) in
                let (context, tableCapacity) = load(slot: id.slot, in: section)
                guard let context, context.id == id else {
                    return (nil, .lookupMiss(slot: id.slot, found: context?.tag ?? 0, table: tableCapacity))
                }
                return (context, .lookupLoad(context: context.tag, slot: id.slot, table: tableCapacity))
            }
            guard let context = loaded else { return nil }
            // Reachable through the table means not freed: the free waits
            // for a grace period after the slot was cleared.
            context.checkAlive(during: "lookup")
            return services.step { () -> (Context<Flavor>?, LifecycleEvent?) in
                let taken = context.users.tryGetLive()
                return (taken ? context : nil, .lookupTryGetLive(context: context.tag, succeeded: taken))
            }
        }
        return found.map { ContextLease(context: $0) }
    }

    /// The context in `slot`, inside a read section, with no reference
    /// taken: the table, then its slot, two dereferences in one section. A
    /// table replaced meanwhile is freed only after the section ends.
    func context(inSlot slot: Int, in section: borrowing ReadSection<Flavor>) -> Context<Flavor>? {
        load(slot: slot, in: section).context
    }

    /// ``context(inSlot:in:)``, with the capacity of the table it read the
    /// slot from: which table the lookup loaded, for its recorder.
    private func load(
        slot: Int, in section: borrowing ReadSection<Flavor>
    ) -> (context: Context<Flavor>?, tableCapacity: Int) {
        table.dereference(in: section) { slots in (slots?.context(at: slot, in: section), slots?.capacity ?? 0) }
    }

    /// The identity of the context in `slot`, or nil (`rcu_access_pointer`,
    /// under the table lock).
    package func occupant(ofSlot slot: Int) -> ObjectIdentifier? {
        withTableLock { currentTable.occupant(ofSlot: slot) }
    }

    /// Destroys a context (`io_destroy` → `kill_ioctx`): unpublishes it,
    /// gives its budget back and kills `users`. It is freed once every
    /// lookup and request is done, after a grace period.
    public func destroy(_ id: ContextID) throws(ContextError) {
        guard let lease = lookup(id) else { throw .noSuchContext }
        try destroy(lease)
    }

    /// Destroys the context `lease` holds (`kill_ioctx`, as `io_destroy`
    /// calls it after its lookup). The lease stays valid until dropped.
    public func destroy(_ lease: borrowing ContextLease<Flavor>) throws(ContextError) {
        let context = lease.context
        // Three steps, each visible to other threads before the next (a
        // lookup can miss the slot while the budget is still charged, and
        // take users before the kill): the spec's Destroy is their
        // composition (Spec/TraceLifecycle.tla).
        let claimed = services.step { () -> (Bool, LifecycleEvent?) in
            let claimed = tableLock.withLock { _ -> Bool in
                // Only one destroy wins (the kernel's atomic_xchg on
                // ctx->dead).
                guard !context.dead.exchange(true, ordering: .acquiringAndReleasing) else { return false }
                // The slot stops being reachable; readers already inside
                // keep using the context until they leave (RCU_INIT_POINTER:
                // storing nil needs no ordering).
                currentTable.unpublish(context.id.slot)
                return true
            }
            return (claimed, claimed ? .destroy(context: context.tag) : .destroyLost(context: context.tag))
        }
        guard claimed else { throw .noSuchContext }
        services.step(.destroyReturnsBudget(context: context.tag)) { returnBudget(context.maxRequests) }
        // The lease's reference keeps users above zero: its release runs
        // when the last lease goes, never inside this step.
        services.step(.destroyKillsUsers(context: context.tag)) { context.users.kill() }
        counters.destroyed.increment()
    }

    /// `aio_nr_sub`: gives budget back, never below zero.
    func returnBudget(_ requests: Int) {
        budget.withLock { inUse in
            if inUse < requests {
                rcuMisuse("ContextTable: request budget would go below zero (\(inUse) - \(requests))")
            }
            inUse -= requests
        }
    }

    /// Requests charged against the budget by live contexts.
    public var budgetInUse: Int { budget.withLock { $0 } }

    /// The IDs of contexts currently in the table.
    public var liveContexts: [ContextID] {
        withTableLock { currentTable.contexts.map(\.id) }
    }

    /// Lifecycle counts so far.
    public var statistics: LifecycleStatistics { counters.snapshot(budgetInUse: budgetInUse) }

    /// Destroys every context left, then waits until all of them are freed
    /// and no callback or free is pending, replaced slot tables' included
    /// (the kernel's `exit_aio`, which waits on `rq_wait`). Returns what it
    /// saw; a ``LifecycleStatistics/isClean`` result proves nothing leaked. Gives
    /// up once `timeoutSeconds` pass without progress (see
    /// ``waitForAll(timeoutSeconds:)-3ttbe``). Blocks the calling thread: async
    /// code uses `await shutdown()`.
    @available(*, noasync, message: "blocks the thread; use 'await shutdown()' in async code")
    public func shutdown(timeoutSeconds: Double = 30) -> LifecycleStatistics {
        for id in liveContexts { try? destroy(id) }
        return waitForAll(timeoutSeconds: timeoutSeconds)
    }

    /// ``shutdown(timeoutSeconds:)`` for async code: suspends instead of
    /// blocking.
    public func shutdown(timeoutSeconds: Double = 30) async -> LifecycleStatistics {
        for id in liveContexts { try? destroy(id) }
        return await waitForAll(timeoutSeconds: timeoutSeconds)
    }

    /// Waits until every destroyed context has been freed and every
    /// context object deallocated, letting callbacks and the cleanup queue
    /// run; gives up once `timeoutSeconds` pass without any change in the
    /// statistics, and reports what is left.
    ///
    /// The limit is on a stall, not on the whole wait: a teardown slowed
    /// down by a busy machine keeps changing the statistics and is waited
    /// for, while a leaked context (a free that never comes) is reported
    /// `timeoutSeconds` after the last change. Blocks the calling thread
    /// (an online QSBR caller goes offline meanwhile): async code uses
    /// `await waitForAll()`.
    @available(*, noasync, message: "blocks the thread; use 'await waitForAll()' in async code")
    public func waitForAll(timeoutSeconds: Double = 30) -> LifecycleStatistics {
        counters.waitForAll(Flavor.self, timeoutSeconds: timeoutSeconds) { budgetInUse }
    }

    /// ``waitForAll(timeoutSeconds:)`` for async code: suspends instead of
    /// blocking.
    public func waitForAll(timeoutSeconds: Double = 30) async -> LifecycleStatistics {
        var wait = TeardownWait(counters.snapshot(budgetInUse: budgetInUse), stallLimit: timeoutSeconds)
        while true {
            await Flavor.barrier()
            if let outcome = wait.outcome(counters.snapshot(budgetInUse: budgetInUse)) { return outcome }
            try? await Task.sleep(nanoseconds: 1_000_000)
        }
    }
}

extension LifecycleCounters {
    /// ``ContextTable/waitForAll(timeoutSeconds:)``, on the counters a
    /// table's contexts report to (they may outlive the table).
    func waitForAll<Flavor: RCUFlavor>(
        _: Flavor.Type, timeoutSeconds: Double, budgetInUse: () -> Int
    ) -> LifecycleStatistics {
        whileBlocked {
            var wait = TeardownWait(snapshot(budgetInUse: budgetInUse()), stallLimit: timeoutSeconds)
            while true {
                Flavor.barrier()
                if let outcome = wait.outcome(snapshot(budgetInUse: budgetInUse())) { return outcome }
                // Frees handed to the cleanup executor are still running.
                usleep(1_000)
            }
        }
    }
}

/// A wait for every context to be freed, blocking or async: settled, or
/// given up after `stallLimit` seconds without any change.
struct TeardownWait {
    private var lastSeen: LifecycleStatistics
    private var lastChange = monotonicSeconds()
    private let stallLimit: Double

    init(_ first: LifecycleStatistics, stallLimit: Double) {
        lastSeen = first
        self.stallLimit = stallLimit
    }

    /// What the wait returns now that it sees `statistics`: them, once
    /// settled or stalled; `nil` while frees are on their way.
    mutating func outcome(_ statistics: LifecycleStatistics) -> LifecycleStatistics? {
        if statistics.live == 0 && statistics.objects == 0 && statistics.pendingFrees == 0 { return statistics }
        if statistics != lastSeen {
            lastSeen = statistics
            lastChange = monotonicSeconds()
            return nil
        }
        return monotonicSeconds() - lastChange > stallLimit ? statistics : nil
    }
}

/// The failure of a publish into a table whose every slot is taken.
private struct FullTable<Flavor: RCUFlavor>: Error {
    let slots: SlotTable<Flavor>
}

/// A `users` reference on a context found by ``ContextTable/lookup(_:)``:
/// the context cannot be destroyed-and-freed while a lease exists. Dropping
/// the lease drops the reference.
public struct ContextLease<Flavor: RCUFlavor>: ~Copyable, Sendable {
    let context: Context<Flavor>

    init(context: Context<Flavor>) { self.context = context }

    deinit {
        let context = context
        context.services.step(.lookupPut(context: context.tag)) { context.users.put() }
    }

    /// The ID of the context the lease holds.
    public var id: ContextID { context.id }

    /// Starts a request, holding a `reqs` reference until it completes
    /// (`aio_get_req`).
    public func submit() throws(ContextError) -> ContextRequest<Flavor> {
        try context.submit()
    }

    /// Takes up to `maximum` completion events off the ring
    /// (`aio_read_events`). Ring indices are read from user-writable memory
    /// and sanitised; garbage there yields wrong events, never a crash.
    public func reapEvents(maximum: Int) -> [CompletionEvent] {
        context.reap(maximum: maximum)
    }

    /// The ring's head and tail, in memory the user may write (the mmapped
    /// `struct aio_ring` header). Valid while the lease exists.
    public var userRingIndices: UnsafeMutablePointer<RingIndices> { context.ring.userIndices }
}
