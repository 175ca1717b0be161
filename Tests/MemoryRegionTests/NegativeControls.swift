@testable import MemoryRegions
import URCU

// The deregistration orders `Spec/MemoryRegion.tla` refutes, compiled in
// the tests only, for the negative controls.

/// `MemoryRegion_PutBeforeGracePeriod`: rdmavt's own order. `rvt_free_lkey`
/// unpublishes and kills, `rvt_put_mr` drops the table's reference, and
/// only then `rvt_check_refs` cleans the queue pairs and synchronizes: the
/// count can reach zero while a reader that loaded the region has yet to
/// take its plain get.
struct PutBeforeGracePeriod: MemoryRegionTeardown {
    func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        steps.unpublish()
        steps.kill()
        steps.dropTableReference()
        steps.dropDependents()
    }

    var synchronizes: Bool { true }

    func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown { .waitForRelease }
}

/// `MemoryRegion_NoSynchronize`: the fixed order without its grace period,
/// trusting the one inside `kill()`'s switch to atomic mode (which a count
/// in atomic mode does not even have).
struct NoSynchronize: MemoryRegionTeardown {
    func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        steps.unpublish()
        steps.dropDependents()
        steps.dropTableReference()
        steps.kill()
    }

    var synchronizes: Bool { false }

    func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown { .waitForRelease }
}

/// `MemoryRegion_IsZeroShortcut`: the pre-2018 test at the top of
/// `rvt_check_refs`: a count of zero is taken to mean the release is done,
/// and the region is freed without waiting for it. `beforeCheck` lets a
/// test put the check where it matters: after the last put, before the
/// release it triggered has finished.
struct IsZeroShortcut: MemoryRegionTeardown {
    let beforeCheck: @Sendable () -> Void

    func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        SynchronizeThenDrop().beforeGracePeriod(steps)
    }

    var synchronizes: Bool { true }

    func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown {
        _ = SynchronizeThenDrop().afterGracePeriod(steps)
        beforeCheck()
        return steps.isZero ? .freeAtOnce : .waitForRelease
    }
}
