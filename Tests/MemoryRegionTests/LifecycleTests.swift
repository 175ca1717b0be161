@testable import MemoryRegions
import Foundation
import Synchronization
import Testing
import TestSupport
import URCU
import URCUTesting

@Suite("Memory-region lifecycle")
struct LifecycleTests {
    @Test("register, look up, deregister: the region is freed and no longer found")
    func basicLifecycle() throws {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 2)
        let region = try table.registerFilled(length: 32)
        guard let reference = table.lookup(region.key) else { throw MissingRegion() }
        #expect(reference.length == 32)
        let intact = reference.holdsPattern
        #expect(intact)
        reference.put()
        try table.deregister(region)
        #expect(region.phase == .freed)
        #expect(!table.isReachable(region.key))
    }

    @Test("a stale key does not reach the next region in its slot")
    func staleKey() throws {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1)
        let first = try table.register(length: 8)
        try table.deregister(first)
        let second = try table.register(length: 8)
        #expect(second.key.slot == first.key.slot)
        #expect(!table.isReachable(first.key))
        #expect(table.isReachable(second.key))
        #expect(throws: MemoryRegionError.tableFull) { try table.register(length: 8) }
        try table.deregister(second)
    }

    @Test("references kept for dependents are dropped by the deregistration; later ones are put at once")
    func dependents() throws {
        let observed = ObservedTeardown(inner: SynchronizeThenDrop())
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1, deregistrationTimeout: 5, teardown: observed)
        let region = try table.register(length: 8)
        guard let kept = table.lookup(region.key), let late = table.lookup(region.key) else { throw MissingRegion() }
        kept.keepInRegion()
        let deregistered = Latch()
        let deregistration = JoinableThread {
            if (try? table.deregister(region)) != nil { deregistered.open() }
        }
        // The dependents are dropped before the grace period: `late` comes
        // too late to be kept, and must not hold the region up.
        observed.reachedGracePeriod.wait()
        late.keepInRegion()
        deregistration.join()
        #expect(deregistered.isOpen)
        #expect(region.phase == .freed)
    }

    @Test("a deregistration that times out reports, frees nothing, and can be retried")
    func timeoutFreesNothing() throws {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1, deregistrationTimeout: 0.2)
        let region = try table.registerFilled()
        guard let holder = table.lookup(region.key) else { throw MissingRegion() }
        #expect(throws: MemoryRegionError.stillReferenced(key: region.key, references: 1, seconds: 0.2)) {
            try table.deregister(region)
        }
        #expect(region.phase == .timedOut)
        let intact = holder.holdsPattern
        #expect(intact, "the timed-out deregistration freed the region")
        #expect(!table.isReachable(region.key))
        holder.put()
        try table.deregister(region)
        #expect(region.phase == .freed)
    }

    /// Deregisters a region a reference still holds, with a 0.1 s timeout.
    static func deregisterHeldRegion() {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1, deregistrationTimeout: 0.1)
        guard let region = try? table.register(length: 8), let holder = table.lookup(region.key) else { return }
        _ = try? table.deregister(region)
        holder.put()
    }

    @Test("the timeout's report names the region, its references and the time")
    func timeoutReport() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            LifecycleTests.deregisterHeldRegion()
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("swift-urcu: memory region lkey0.1 still has 1 references after 0.1 s"), "stderr was: \(stderr)")
    }

    @Test("async deregistrations suspend while they wait: their executor keeps running")
    func asyncDeregistrationSuspends() async throws {
        // The deregistrations and this test's own steps run on an executor
        // with one thread, away from the cooperative pool (which other
        // suites' long synchronous tests may hold for minutes: a run that
        // waited for the pool timed out). Were a wait to block its thread,
        // the other deregistrations could not start, and the test fails
        // within the timeouts below.
        let executor = QueueExecutor(label: "urcu.test.deregistrations")
        let count = 3
        let table = MemoryRegionTable<MembarrierRCU>(capacity: count, deregistrationTimeout: 10)
        let regions = try (0..<count).map { _ in try table.register(length: 8) }
        let holders = try regions.map { region in
            guard let reference = table.lookup(region.key) else { throw MissingRegion() }
            return Holder(reference)
        }
        let finished = Counter()
        try await withTaskExecutorPreference(executor) {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for region in regions {
                    group.addTask {
                        try await table.deregister(region)
                        finished.increment()
                    }
                }
                // Every deregistration is past its kill, waiting for its
                // holder; a task on the same executor still runs meanwhile.
                #expect(await offPool { eventually(seconds: 10) { regions.allSatisfy { $0.references.isDying } } })
                await Task(executorPreference: executor) { await Task.yield() }.value
                #expect(finished.value == 0)
                holders.forEach { $0.drop() }
                try await group.waitForAll()
            }
        }
        #expect(finished.value == count)
        #expect(regions.allSatisfy { $0.phase == .freed })
    }
}

@Suite("Memory-region misuse")
struct MisuseTests {
    // The scenarios, synchronous (the exit tests' bodies are async).

    static func deregisterTwice() {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1)
        guard let region = try? table.register(length: 8) else { return }
        try? table.deregister(region)
        try? table.deregister(region)
    }

    static func deregisterWhileDeregistering() {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1, deregistrationTimeout: 60)
        guard let region = try? table.register(length: 8), let holder = table.lookup(region.key) else { return }
        let first = JoinableThread { try? table.deregister(region) }
        _ = eventually { region.references.isDying }
        try? table.deregister(region)
        holder.put()
        first.join()
    }

    static func deregisterInAnotherTable() {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1)
        let other = MemoryRegionTable<MembarrierRCU>(capacity: 1)
        guard let region = try? table.register(length: 8) else { return }
        try? other.deregister(region)
    }

    static func deregisterInsideReadSection() {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1)
        guard let region = try? table.register(length: 8) else { return }
        MembarrierRCU.read { _ in try? table.deregister(region) }
    }

    /// Only a broken order can free a region a reference still holds (the
    /// timeout path frees nothing), so this uses one that frees at once.
    static func referenceAfterFree() {
        let table = MemoryRegionTable<MembarrierRCU>(capacity: 1, deregistrationTimeout: 1, teardown: FreeAtOnce())
        guard let region = try? table.register(length: 8), let holder = table.lookup(region.key) else { return }
        try? table.deregister(region)
        _ = holder.holdsPattern
    }

    @Test func deregisterTwice() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            MisuseTests.deregisterTwice()
        }
        expectDiagnostic(result, "MemoryRegionTable: deregister() of region lkey0.1, which is already deregistered and freed")
    }

    @Test func deregisterWhileDeregistering() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            MisuseTests.deregisterWhileDeregistering()
        }
        expectDiagnostic(result, "MemoryRegionTable: deregister() of region lkey0.1 while another deregistration of it is running")
    }

    @Test func deregisterInAnotherTable() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            MisuseTests.deregisterInAnotherTable()
        }
        expectDiagnostic(result, "MemoryRegionTable: deregister() of region lkey0.1, which belongs to another table")
    }

    @Test func deregisterInsideReadSection() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            MisuseTests.deregisterInsideReadSection()
        }
        expectDiagnostic(result, "MemoryRegionTable: deregister() of region lkey0.1 inside a read section of memb")
    }

    @Test("a reference used after its region was freed is diagnosed")
    func referenceAfterFree() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            MisuseTests.referenceAfterFree()
        }
        expectDiagnostic(result, "MemoryRegionTable: a reference reached region lkey0.1 after it was freed (use after free)")
    }
}

/// Frees as soon as the references are dropped, whoever still holds one.
struct FreeAtOnce: MemoryRegionTeardown {
    func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        SynchronizeThenDrop().beforeGracePeriod(steps)
    }

    var synchronizes: Bool { true }

    func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown {
        _ = SynchronizeThenDrop().afterGracePeriod(steps)
        return .freeAtOnce
    }
}

/// Holds a reference until ``drop()`` (references are not copyable, so an
/// array cannot hold them directly).
final class Holder: @unchecked Sendable {
    private var reference: MemoryRegionReference<MembarrierRCU>?

    init(_ reference: consuming MemoryRegionReference<MembarrierRCU>) { self.reference = .some(reference) }

    func drop() { reference = nil }
}
