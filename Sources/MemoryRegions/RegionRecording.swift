/// One step of a memory region's lifecycle, named after the action of
/// `Spec/MemoryRegion.tla` it implements. Regions are named by their key.
package enum MemoryRegionEvent: Equatable, Sendable {
    /// `Register`: the table's reference taken and the region published.
    case registered(MemoryRegionKey, atomicCount: Bool)
    /// A lookup's read section began (the read lock of `LookupLoad`,
    /// recorded apart).
    case lookupReadLock
    /// `LookupLoad`: inside the read section, the slot held the region.
    case lookupLoad(MemoryRegionKey)
    /// A lookup for `key` found its slot empty or holding another region
    /// (a stuttering step).
    case lookupMiss(MemoryRegionKey)
    /// `LookupGet`: the plain get (its read unlock is recorded apart).
    case lookupGet(MemoryRegionKey)
    /// The lookup's read section is about to end.
    case lookupReadUnlock
    /// `ReaderPut`: a reference dropped.
    case readerPut(MemoryRegionKey)
    /// `Adopt`: a reference handed to the region (or put, once the
    /// dependents are dropped).
    case adopted(MemoryRegionKey)
    /// `Deregister`, or `Retry` after a timeout: the region claimed.
    case deregistrationClaimed(MemoryRegionKey)
    /// A deregistration step of the spec's `Order`.
    case deregistrationStep(MemoryRegionKey, DeregistrationStep)
    /// `Timeout`: the wait for the release gave up.
    case timedOut(MemoryRegionKey)
    /// `WaitAndFree` (or the free after `isZero`): the region is freed.
    case freed(MemoryRegionKey)
    /// `RefSwitchConfirm`: the count's switch to atomic mode ended.
    case switchConfirmed(MemoryRegionKey)
    /// `Release`: the release signalled the deregistration.
    case released(MemoryRegionKey)

    /// Whether the spec's action takes the calling thread as a parameter.
    package var isThreadStep: Bool {
        switch self {
        case .lookupReadLock, .lookupLoad, .lookupMiss, .lookupGet, .lookupReadUnlock, .readerPut, .adopted: true
        default: false
        }
    }
}

/// A step of a deregistration, by the name `Spec/MemoryRegion.tla`'s
/// `Order` gives it.
package enum DeregistrationStep: String, Sendable {
    case unpublish, dropDependents, syncStart, syncEnd, putTable, kill, isZero
}

/// Receives every step of a ``MemoryRegionTable``'s regions: the
/// conformance tests' recorder, which checks runs against
/// `Spec/MemoryRegion.tla`. A table without one pays a nil check per step.
///
/// A recorder observes; it must not order what it observes. Steps on
/// different threads run concurrently, exactly as without a recorder: no
/// lock may be held across a step, nor taken by every step.
package protocol MemoryRegionRecorder: AnyObject, Sendable {
    /// Runs `action`, one step, and records the event it returns (none:
    /// nothing the spec sees happened), with when it ran: the step takes
    /// effect somewhere between `action`'s start and end. A step may run
    /// another nested in it (a release run by a put).
    func step(_ action: () -> MemoryRegionEvent?)
}

// The table's calls, through its optional recorder. Not generic over a
// result (a step hands its result out through a captured variable): an
// unspecialised generic table would pay for a generic tuple on every
// lookup even with no recorder.
extension Optional where Wrapped == any MemoryRegionRecorder {
    /// Runs `action` as the recorded step `event` (with no recorder: just
    /// runs it).
    @inline(__always)
    func step(_ event: @autoclosure () -> MemoryRegionEvent, _ action: () -> Void) {
        guard let recorder = self else { return action() }
        recorder.step {
            action()
            return event()
        }
    }

    /// Runs `action` as a recorded step whose event it chooses.
    @inline(__always)
    func step(_ action: () -> MemoryRegionEvent?) {
        guard let recorder = self else {
            _ = action()
            return
        }
        recorder.step(action)
    }
}
