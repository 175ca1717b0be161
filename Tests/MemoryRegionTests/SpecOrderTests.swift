import Foundation
@testable import MemoryRegions
import Synchronization
import Testing
import URCU

/// The deregistration orders against `Spec/MemoryRegion.tla`: each
/// teardown, run for real, takes exactly the steps, in exactly the order,
/// that the spec's `Order` gives its bug variant (the fixed one: TLC
/// proves it safe; the others: TLC refutes them). Renaming or reordering a
/// step on either side fails here.
@Suite("Deregistration orders match the spec")
struct SpecOrderTests {
    /// The spec's `Order` for `bug`, read from `Spec/MemoryRegion.tla`.
    static func specOrder(bug: String) throws -> [String] {
        let specURL = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Spec/MemoryRegion.tla")
        let spec = try String(contentsOf: specURL, encoding: .utf8)
        // `FixedOrder == <<...>>`, or the CASE arm `Bug = "X" -> <<...>>`.
        let head = bug == "None" ? "FixedOrder ==" : "Bug = \"\(bug)\" ->"
        guard let start = spec.range(of: head),
              let open = spec.range(of: "<<", range: start.upperBound..<spec.endIndex),
              let close = spec.range(of: ">>", range: open.upperBound..<spec.endIndex)
        else { throw SpecParseError(bug: bug) }
        return spec[open.upperBound..<close.lowerBound]
            .split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
    }

    struct SpecParseError: Error { let bug: String }

    /// The steps a deregistration with `teardown` takes, in order, for a
    /// region nobody else holds.
    static func stepsTaken(by teardown: some MemoryRegionTeardown) throws -> [String] {
        let steps = Mutex<[String]>([])
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
        var expected = try Self.specOrder(bug: bug)
        // The shortcut's check finds the count at zero (nobody else holds
        // the region) and frees at once: no wait.
        if bug == "IsZeroShortcut" { expected.removeAll { $0 == "wait" } }
        #expect(taken == expected)
    }
}
