import Foundation
import MemoryRegions
import URCU

// The deregistration orders `Spec/MemoryRegion.tla` refutes, compiled in
// the tests only, for the negative controls (MemoryRegionTests and the
// conformance tests).

/// `MemoryRegion_PutBeforeGracePeriod`: rdmavt's own order. `rvt_free_lkey`
/// unpublishes and kills, `rvt_put_mr` drops the table's reference, and
/// only then `rvt_check_refs` cleans the queue pairs and synchronizes: the
/// count can reach zero while a reader that loaded the region has yet to
/// take its plain get.
package struct PutBeforeGracePeriod: MemoryRegionTeardown {
    package init() {}

    package func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        steps.unpublish()
        steps.kill()
        steps.dropTableReference()
        steps.dropDependents()
    }

    package var synchronizes: Bool { true }

    package func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown { .waitForRelease }
}

/// `MemoryRegion_NoSynchronize`: the fixed order without its grace period,
/// trusting the one inside `kill()`'s switch to atomic mode (which a count
/// in atomic mode does not even have).
package struct NoSynchronize: MemoryRegionTeardown {
    package init() {}

    package func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        steps.unpublish()
        steps.dropDependents()
        steps.dropTableReference()
        steps.kill()
    }

    package var synchronizes: Bool { false }

    package func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown { .waitForRelease }
}

/// `MemoryRegion_IsZeroShortcut`: the pre-2018 test at the top of
/// `rvt_check_refs`: a count of zero is taken to mean the release is done,
/// and the region is freed without waiting for it. `beforeCheck` lets a
/// test put the check where it matters: after the last put, before the
/// release it triggered has finished.
package struct IsZeroShortcut: MemoryRegionTeardown {
    let beforeCheck: @Sendable () -> Void

    package init(beforeCheck: @escaping @Sendable () -> Void) { self.beforeCheck = beforeCheck }

    package func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        SynchronizeThenDrop().beforeGracePeriod(steps)
    }

    package var synchronizes: Bool { true }

    package func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown {
        _ = SynchronizeThenDrop().afterGracePeriod(steps)
        beforeCheck()
        return steps.isZero ? .freeAtOnce : .waitForRelease
    }
}

/// What `Spec/MemoryRegion.tla` says about deregistration orders.
package enum MemoryRegionSpec {
    /// The spec's `Order` for `bug` ("None": `FixedOrder`), read from
    /// `Spec/MemoryRegion.tla`: the names the deregistration's steps report.
    package static func order(bug: String) throws -> [String] {
        let specURL = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Spec/MemoryRegion.tla")
        let spec = try String(contentsOf: specURL, encoding: .utf8)
        // `FixedOrder == <<...>>`, or the CASE arm `Bug = "X" -> <<...>>`.
        let head = bug == "None" ? "FixedOrder ==" : "Bug = \"\(bug)\" ->"
        guard let start = spec.range(of: head),
              let open = spec.range(of: "<<", range: start.upperBound..<spec.endIndex),
              let close = spec.range(of: ">>", range: open.upperBound..<spec.endIndex)
        else { throw ParseError(bug: bug) }
        return spec[open.upperBound..<close.lowerBound]
            .split(separator: ",")
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines).trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
    }

    package struct ParseError: Error { let bug: String }
}
