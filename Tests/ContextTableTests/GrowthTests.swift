@testable import ContextTable
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// The table that grows under RCU (`ioctx_add_table`): a full table is
/// copied into a larger one under the table lock, published, and the old
/// one freed after a grace period of the table's flavor.
@Suite("Context table growth")
struct GrowthTests {
    @Test("a table that starts with one slot doubles as it fills, and keeps every context reachable")
    func growsByDoubling() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 1, maximumCapacity: 64, requestBudget: 1_000)
        let ids = try (0..<40).map { _ in try table.create(maxRequests: 1) }
        #expect(table.capacity == 64)
        #expect(table.statistics.tableGrowths == 6, "1, 2, 4, 8, 16, 32, 64 slots")
        #expect(ids.allSatisfy { table.isReachable($0) })
        #expect(Set(ids.map(\.slot)) == Set(0..<40), "a grown table keeps each context in its slot")
        let statistics = table.shutdown(timeoutSeconds: teardownStallSeconds)
        #expect(statistics.isClean && statistics.freed == 40, "\(statistics)")
    }

    @Test("at the bound, create fails with tableFull and gives its budget back")
    func boundGivesTableFull() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 1, maximumCapacity: 3, requestBudget: 100)
        for _ in 0..<3 { _ = try table.create(maxRequests: 5) }
        #expect(table.capacity == 3, "the last growth stops at the bound, short of doubling")
        #expect(throws: ContextError.tableFull) { try table.create(maxRequests: 5) }
        #expect(table.budgetInUse == 15)
        #expect(table.statistics.tableGrowths == 2)
        #expect(table.statistics.failedCreates == 1)
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("shutdown (exit_aio) kills every context and returns once all of them and every old table are freed")
    func shutdownWaitsForEveryFree() async throws {
        for waitsAsynchronously in [false, true] {
            let table = ContextTable<MembarrierRCU>(capacity: 1, maximumCapacity: 16, requestBudget: 1_000)
            // Requests in flight: their contexts are freed only after the
            // teardown has cancelled them.
            let requests = try (0..<10).map { _ in try table.lease(try table.create(maxRequests: 2)).submit() }
            #expect(table.statistics.tableGrowths == 4)
            let statistics = waitsAsynchronously
                ? await table.shutdown(timeoutSeconds: teardownStallSeconds)
                : await offPool { table.shutdown(timeoutSeconds: teardownStallSeconds) }
            #expect(statistics.freed == 10 && statistics.cancelled == 10, "\(statistics)")
            #expect(statistics.pendingFrees == 0, "old tables and contexts all freed: \(statistics)")
            #expect(statistics.isClean, "\(statistics)")
            #expect(requests.allSatisfy { !$0.complete() }, "the teardown cancelled them")
        }
    }

    // MARK: Races

    @Test("lookups racing many growths never miss a live context nor find a destroyed one",
          arguments: [MembarrierRCU.self, MemoryBarrierRCU.self, BulletproofRCU.self] as [any RCUFlavor.Type])
    func lookupsRaceGrowth(flavor: any RCUFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let outcome = Self.churnWhileGrowing(F.self, growth: GrowUnderTableLock())
            #expect(outcome.missedLive == 0 && outcome.foundDestroyed == 0, "\(outcome)")
            #expect(outcome.growths >= 50, "the race must span many growths: \(outcome)")
            #expect(outcome.unclean.isEmpty, "\(outcome.unclean)")
        }
        check(flavor)
    }

    struct ChurnOutcome: CustomStringConvertible {
        var missedLive = 0
        var foundDestroyed = 0
        var lookups = 0
        var growths = 0
        /// Rounds whose teardown was not clean, with what it saw.
        var unclean: [LifecycleStatistics] = []

        var description: String {
            "\(missedLive) live contexts missed, \(foundDestroyed) destroyed ones found, "
                + "\(lookups) lookups, \(growths) growths"
        }
    }

    /// Rounds of a table that starts with one slot: three threads each
    /// create and destroy contexts of their own, and after every step look
    /// up all those they hold (each must be found: nobody else destroys
    /// them) and the one they destroyed (which must not). The table grows
    /// six times a round, under the other threads' lookups, creates and
    /// destroys.
    static func churnWhileGrowing<F: RCUFlavor>(
        _: F.Type, growth: any TableGrowth, rounds: Int = 12, workers: Int = 3
    ) -> ChurnOutcome {
        let missedLive = Counter(), foundDestroyed = Counter(), lookups = Counter()
        var outcome = ChurnOutcome()
        for round in 0..<rounds {
            let table = ContextTable<F>(
                capacity: 1, maximumCapacity: 64, requestBudget: 1 << 20, cleanupExecutor: nil,
                reclamation: DoubleBounce(), recorder: nil, growth: growth)
            runThreads(workers) { worker in
                var random = SplitMix(seed: UInt64(round * workers + worker + 1))
                var mine: [ContextID] = []
                for _ in 0..<150 {
                    if mine.count < 20 && random.next() % 3 != 0 {
                        if let id = try? table.create(maxRequests: 1) { mine.append(id) }
                    } else if !mine.isEmpty {
                        let victim = mine.remove(at: Int(random.next() % UInt64(mine.count)))
                        try? table.destroy(victim)
                        lookups.increment()
                        if table.isReachable(victim) { foundDestroyed.increment() }
                    }
                    for id in mine {
                        lookups.increment()
                        if !table.isReachable(id) { missedLive.increment() }
                    }
                }
            }
            let statistics = table.shutdown(timeoutSeconds: teardownStallSeconds)
            outcome.growths += statistics.tableGrowths
            if !statistics.isClean { outcome.unclean.append(statistics) }
        }
        outcome.missedLive = missedLive.value
        outcome.foundDestroyed = foundDestroyed.value
        outcome.lookups = lookups.value
        return outcome
    }

    // MARK: A reader across a growth

    @Test("a lookup that loaded the table before it grew reads its slot after: the old table is still there")
    func readerAcrossGrowthKeepsOldTable() {
        #expect(Self.readerPausedAcrossGrowth(growth: GrowUnderTableLock()))
    }

    /// A reader loads the table pointer (a lookup's first dereference) and
    /// is held inside its section while another create grows the table;
    /// then it reads slot 0 of the table it loaded (the second). Returns
    /// whether it found the context there. The old table's free must wait
    /// for the reader's section to end.
    static func readerPausedAcrossGrowth(growth: any TableGrowth) -> Bool {
        let table = ContextTable<MembarrierRCU>(
            capacity: 1, maximumCapacity: 2, requestBudget: 10, cleanupExecutor: nil,
            reclamation: DoubleBounce(), recorder: nil, growth: growth)
        guard let first = try? table.create(maxRequests: 1) else { return false }
        let loaded = Latch(), grown = Latch()
        let found = Lock(false)
        let reader = JoinableThread {
            MembarrierRCU.read { section in
                table.table.dereference(in: section) { slots in
                    loaded.open()
                    grown.wait()
                    // The free of the old table, if it came too early, has
                    // run by now (it runs inside the growth, or after a
                    // grace period this section holds up).
                    let context = slots?.context(at: first.slot, in: section)
                    found.withLock { $0 = context?.id == first }
                }
            }
        }
        loaded.wait()
        _ = try? table.create(maxRequests: 1)
        let grew = table.statistics.tableGrowths == 1
        // The old table waits for the reader: its free is still pending.
        let heldBack = table.statistics.pendingFrees == 1
        grown.open()
        reader.join()
        let statistics = table.shutdown(timeoutSeconds: teardownStallSeconds)
        return grew && heldBack && statistics.isClean && found.withLock { $0 }
    }

    // MARK: Negative controls

    @Test("negative control: an old table freed without a grace period is caught under the reader")
    func oldTableFreedWithoutGracePeriodIsCaught() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = GrowthTests.readerPausedAcrossGrowth(growth: FreeOldTableWithoutGracePeriod())
        }
        // The poison is checked before the freed slots are read: ASan runs
        // see the diagnostic too.
        expectDiagnostic(result, "ContextTable: a lookup read a slot table after it was freed (use after free)")
    }

    @Test("negative control: a copy outside the table lock loses a context published meanwhile")
    func copyOutsideLockLosesPublish() throws {
        let growth = CopySlotsOutsideTableLock()
        let table = ContextTable<MembarrierRCU>(
            capacity: 2, maximumCapacity: 4, requestBudget: 10, cleanupExecutor: nil,
            reclamation: DoubleBounce(), recorder: nil, growth: growth)
        _ = try table.create(maxRequests: 1)
        let second = try table.create(maxRequests: 1)
        // A lease on the context created during the copy: the only way to
        // destroy it once the table has lost it.
        let published = Lock<ContextLease<MembarrierRCU>?>(nil)
        growth.betweenCopyAndPublish {
            // Frees slot 1 of the table being copied, and fills it again.
            try? table.destroy(second)
            guard let id = try? table.create(maxRequests: 1) else { return }
            published.withLock { $0 = table.lookup(id) }
        }
        _ = try table.create(maxRequests: 1)
        #expect(table.statistics.tableGrowths == 1)
        guard let lease = published.withLock({ $0.take() }) else {
            Issue.record("the context created during the copy was not created")
            return
        }
        let lost = lease.id
        #expect(!table.isReachable(lost), "the control should lose the context created during its copy")
        #expect(!table.liveContexts.contains(lost))
        // Clean up: destroying it also clears slot 1 of the new table, where
        // the destroyed context the copy kept would otherwise be reached
        // after its free.
        try table.destroy(lease)
        _ = consume lease
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("negative control: a copy outside the table lock keeps a destroyed context, which a lookup reaches after its free")
    func copyOutsideLockKeepsUnpublished() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            let growth = CopySlotsOutsideTableLock()
            let table = ContextTable<MembarrierRCU>(
                capacity: 1, maximumCapacity: 2, requestBudget: 10, cleanupExecutor: nil,
                reclamation: DoubleBounce(), recorder: nil, growth: growth)
            guard let first = try? table.create(maxRequests: 1) else { return }
            growth.betweenCopyAndPublish { try? table.destroy(first) }
            _ = try? table.create(maxRequests: 1)
            // The destroyed context stays in the new table; once it is
            // freed, a lookup of its ID reaches it.
            _ = eventually(seconds: 30) { table.statistics.freed == 1 }
            _ = table.isReachable(first)
        }
        expectDiagnostic(result, "ContextTable: lookup reached ctx0.1 after it was freed (use after free)")
    }
}
