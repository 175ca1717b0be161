import Foundation
@testable import MemoryRegions
import Synchronization
import TestSupport
import Testing
import URCU

/// The deregistration orders against `Spec/MemoryRegion.tla`: each
/// teardown, run for real, takes exactly the steps, in exactly the order,
/// that the spec's `Order` gives its bug variant (the fixed one: TLC
/// proves it safe; the others: TLC refutes them). Renaming or reordering a
/// step on either side fails here.
@Suite("Deregistration orders match the spec")
struct SpecOrderTests {
    /// The steps a deregistration with `teardown` takes, in order, for a
    /// region nobody else holds.
    static func stepsTaken(by teardown: some MemoryRegionTeardown) throws -> [String] {
        let steps = Lock<[String]>([])
        let table = MemoryRegionTable<MembarrierRCU>(
            capacity: 1, deregistrationTimeout: 10, teardown: teardown,
            stepTaken: { name in steps.withLock { $0.append(name) } })
        let region = try table.register(length: 8, atomicCount: true)
        try table.deregister(region)
        return steps.withLock { $0 }
    }

    @Test("each teardown takes its variant's steps in the spec's order", arguments: [
        ("None", SynchronizeThenDrop() as any MemoryRegionTeardown),
        ("PutBeforeGracePeriod", PutBeforeGracePeriod()),
        ("NoSynchronize", NoSynchronize()),
        ("IsZeroShortcut", IsZeroShortcut {}),
    ])
    func ordersMatchSpec(bug: String, teardown: any MemoryRegionTeardown) throws {
        let taken = try Self.stepsTaken(by: teardown)
        var expected = try MemoryRegionSpec.order(bug: bug)
        // The shortcut's check finds the count at zero (nobody else holds
        // the region) and frees at once: no wait.
        if bug == "IsZeroShortcut" { expected.removeAll { $0 == "wait" } }
        #expect(taken == expected)
    }
}
