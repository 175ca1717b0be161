@testable import ContextTable
import PropertyBased
import Synchronization
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

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
        let statistics = table.waitForAll()
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
        #expect(table.shutdown().isClean)
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
        #expect(table.shutdown().isClean)
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
        #expect(table.shutdown().isClean)
    }

    @Test("destroy with requests in flight cancels them, and frees only after the last one")
    func cancelOnDestroy() throws {
        let table = ContextTable<ManualRCU>(capacity: 2, requestBudget: 10)
        let id = try table.create(maxRequests: 4)
        let requests = try {
            let lease = try table.lease(id)
            return try (0..<3).map { _ in try lease.submit() }
        }()
        try table.destroy(id)
        #expect(table.statistics.freed == 0)
        // The users switch completes: users reaches zero, requests are
        // cancelled, reqs dies; the free still waits for a grace period.
        ManualRCU.completeGracePeriod()
        #expect(table.statistics.cancelled == 3)
        #expect(requests.allSatisfy { !$0.complete() }, "cancelled requests are already finished")
        #expect(table.statistics.freed == 0, "freed without an explicit grace period")
        let statistics = table.waitForAll()
        #expect(statistics.isClean, "\(statistics)")
    }
}
