import URCU

/// The order in which a deregistration drops the references that keep a
/// region's count above zero. A protocol only so that the tests can put the
/// orders the spec refutes in its place, in their own target, and watch
/// them fail; the library has one conformer, ``SynchronizeThenDrop``.
package protocol MemoryRegionTeardown: Sendable {
    /// The steps before the grace period.
    func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>)
    /// Whether a grace period of the table's flavor separates the two.
    var synchronizes: Bool { get }
    /// The steps after the grace period, and what comes next.
    func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown
}

/// What a deregistration does once its references are dropped.
package enum AfterTeardown: Sendable {
    /// Wait for the release (count zero), then free.
    case waitForRelease
    /// Free now (the pre-2018 `percpu_ref_is_zero` shortcut: a negative
    /// control only).
    case freeAtOnce
}

/// The steps of one deregistration (`Spec/MemoryRegion.tla`'s actions;
/// each reports the name its `Order` gives it to the table's test hook).
package struct TeardownSteps<Flavor: RCUFlavor>: Sendable {
    let table: MemoryRegionTable<Flavor>
    package let region: MemoryRegion<Flavor>

    /// `Unpublish`: empties the region's slot.
    package func unpublish() {
        take(.unpublish) { table.unpublish(region) }
    }
    /// `DropDependents`: `rvt_dereg_clean_qps`.
    package func dropDependents() {
        take(.dropDependents) { region.dropDependents() }
    }
    /// `PutTable`: the reference the table took when it published the region.
    package func dropTableReference() {
        take(.putTable) { region.references.put() }
    }
    /// `Kill`: `percpu_ref_kill`, which drops the owner's reference.
    package func kill() {
        take(.kill) { region.references.kill() }
    }
    /// `percpu_ref_is_zero`.
    package var isZero: Bool {
        var zero = false
        take(.isZero) { zero = region.references.isZero }
        return zero
    }

    /// Takes `step`: reports its name to the table's hook, then runs
    /// `action` as the recorded step.
    func take(_ step: DeregistrationStep, _ action: () -> Void) {
        table.stepTaken?(step.rawValue)
        table.recorder.step(.deregistrationStep(region.key, step), action)
    }
}

/// The order `Spec/MemoryRegion.tla` proves safe: unpublish, drop the
/// dependents, a grace period of the table's flavor, and only then the
/// table's and the owner's references. Every reader that found the region
/// took its plain get inside a section that grace period waited for, so
/// the count cannot reach zero while a reader can still find the region.
///
/// rdmavt kills and puts before its `synchronize_rcu()`; there, only
/// percpu_ref's internal grace period (percpu mode, one RCU flavor) stands
/// between a reader's get and a count of zero.
package struct SynchronizeThenDrop: MemoryRegionTeardown {
    package init() {}

    package func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        steps.unpublish()
        steps.dropDependents()
    }

    package var synchronizes: Bool { true }

    package func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown {
        steps.dropTableReference()
        steps.kill()
        return .waitForRelease
    }
}
