@testable import ContextTable
import PropertyBased
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// The grace-period domain of these tests.
typealias Manual = ManualRCU<LifecycleTests>

@Suite("Context lifecycle")
struct LifecycleTests {
    @Test("create, lookup, submit, complete, destroy: everything is given back")
    func basicLifecycle() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 4, requestBudget: 100)
        let id = try table.create(maxRequests: 10)
        #expect(table.budgetInUse == 10)
        do {
            let lease = try table.lease(id)
            let request = try lease.submit()
            #expect(request.complete(result: 7))
            #expect(!request.complete(result: 8), "a request completes once")
            #expect(lease.reapEvents(maximum: 10) == [CompletionEvent(request: request.serial, result: 7)])
        }
        try table.destroy(id)
        #expect(table.budgetInUse == 0)
        #expect(!table.isReachable(id))
        #expect(throws: ContextError.noSuchContext) { try table.destroy(id) }
        let statistics = table.waitForAll(timeoutSeconds: teardownStallSeconds)
        #expect(statistics.isClean, "\(statistics)")
        #expect(statistics.freed == 1)
    }

    @Test("a failed table insert gives the budget back (the 2013 aio_nr_sub fix)")
    func tableFullReturnsBudget() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 2, requestBudget: 100)
        _ = try table.create(maxRequests: 5)
        _ = try table.create(maxRequests: 5)
        #expect(throws: ContextError.tableFull) { try table.create(maxRequests: 5) }
        #expect(table.budgetInUse == 10)
        #expect(throws: ContextError.budgetExhausted) { try table.create(maxRequests: 91) }
        #expect(throws: ContextError.invalidMaxRequests) { try table.create(maxRequests: 0) }
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("a stale ID does not reach a later context in the same slot")
    func staleID() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 1, requestBudget: 10)
        let first = try table.create(maxRequests: 1)
        try table.destroy(first)
        let second = try table.create(maxRequests: 1)
        #expect(first.slot == second.slot)
        #expect(!table.isReachable(first))
        #expect(table.isReachable(second))
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("the ring limits requests in flight")
    func ringFull() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 1, requestBudget: 10)
        let id = try table.create(maxRequests: 2)
        let lease = try table.lease(id)
        let first = try lease.submit()
        let second = try lease.submit()
        #expect(throws: ContextError.ringFull) { _ = try lease.submit() }
        first.complete()
        second.complete()
        #expect(throws: ContextError.ringFull) { _ = try lease.submit() }
        #expect(lease.reapEvents(maximum: 1).count == 1)
        _ = try lease.submit().complete()
        _ = consume lease
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("a garbage head never hands back a slot a request still holds")
    func garbageHeadDoesNotOverAdmit() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 1, requestBudget: 10)
        let id = try table.create(maxRequests: 2)
        let lease = try table.lease(id)
        let first = try lease.submit()
        let second = try lease.submit()
        // User space claims events that were never posted.
        lease.userRingIndices.pointee.head = 1
        _ = lease.reapEvents(maximum: 8)
        #expect(throws: ContextError.ringFull) { _ = try lease.submit() }
        first.complete()
        second.complete()
        _ = consume lease
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("events reaped straight from the shared ring give their slots back")
    func reapingThroughTheSharedRing() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 1, requestBudget: 10)
        let id = try table.create(maxRequests: 2)
        let lease = try table.lease(id)
        for _ in 0..<5 {
            try lease.submit().complete()
            try lease.submit().complete()
            // The user consumes the events from the mmapped ring itself.
            lease.userRingIndices.pointee.head = lease.userRingIndices.pointee.tail
        }
        _ = consume lease
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("an absurd maxRequests is refused, not an overflow")
    func hugeMaxRequests() throws {
        let table = ContextTable<MembarrierRCU>(capacity: 2, requestBudget: .max)
        _ = try table.create(maxRequests: 1)
        #expect(throws: ContextError.invalidMaxRequests) { try table.create(maxRequests: .max) }
        let small = ContextTable<MembarrierRCU>(capacity: 2, requestBudget: 10)
        _ = try small.create(maxRequests: 8)
        #expect(throws: ContextError.budgetExhausted) { try small.create(maxRequests: ContextTable<MembarrierRCU>.maxRequestsPerContext) }
        #expect(table.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
        #expect(small.shutdown(timeoutSeconds: teardownStallSeconds).isClean)
    }

    @Test("a table dropped while contexts are being torn down: they still finish")
    func tableDroppedDuringTeardown() throws {
        let counters: LifecycleCounters
        let request: ContextRequest<MembarrierRCU>
        weak var weakTable: ContextTable<MembarrierRCU>?
        do {
            let table = ContextTable<MembarrierRCU>(capacity: 4, requestBudget: 10)
            weakTable = table
            counters = table.counters
            let id = try table.create(maxRequests: 2)
            request = try table.lease(id).submit()
            _ = try table.create(maxRequests: 2)   // never destroyed: the table's deinit does it
            try table.destroy(id)
        }
        #expect(weakTable == nil)
        // Completing (or having been cancelled) works without the table;
        // both contexts are freed after their grace periods.
        request.complete()
        let statistics = counters.waitForAll(MembarrierRCU.self, timeoutSeconds: teardownStallSeconds) { 0 }
        #expect(statistics.freed == 2, "\(statistics)")
        #expect(statistics.live == 0 && statistics.pendingFrees == 0, "\(statistics)")
    }

    @Test("destroy with requests in flight cancels them, and frees only after the last one")
    func cancelOnDestroy() throws {
        let table = ContextTable<Manual>(capacity: 2, requestBudget: 10)
        let id = try table.create(maxRequests: 4)
        let requests = try {
            let lease = try table.lease(id)
            return try (0..<3).map { _ in try lease.submit() }
        }()
        try table.destroy(id)
        #expect(table.statistics.freed == 0)
        // The users switch completes: users reaches zero, requests are
        // cancelled, reqs dies; the free still waits for a grace period.
        Manual.completeGracePeriod()
        #expect(table.statistics.cancelled == 3)
        #expect(requests.allSatisfy { !$0.complete() }, "cancelled requests are already finished")
        #expect(table.statistics.freed == 0, "freed without an explicit grace period")
        let statistics = table.waitForAll(timeoutSeconds: teardownStallSeconds)
        #expect(statistics.isClean, "\(statistics)")
    }
}
