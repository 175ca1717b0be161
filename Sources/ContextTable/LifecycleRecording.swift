import URCU

/// One step of the context lifecycle, named after the action of
/// `Spec/Lifecycle.tla` it implements. Contexts are named by the tag the
/// recorder gave their create.
package enum LifecycleEvent: Equatable, Sendable {
    package enum Reference: String, Sendable { case users, reqs }

    /// `CreateReserve`: budget charged, refs set up.
    case createReserve(context: Int, atomicReferences: Bool)
    /// `CreateFailsNoMemory`: the create failed before touching the budget
    /// (here: `maxRequests` out of range).
    case createFailsEarly(context: Int)
    /// `CreateFailsBudget`.
    case createFailsBudget(context: Int)
    /// `CreatePublish`.
    case createPublish(context: Int, slot: Int)
    /// `CreateFailsTableInsert`: every slot taken; budget given back.
    case createFailsTableInsert(context: Int)
    /// The lookup's read section began (the read lock of `LookupLoad`;
    /// trace validation records it apart).
    case lookupReadLock
    /// `LookupLoad`: inside a read section, the slot held the context.
    /// `table` is the capacity of the slot table the lookup loaded first
    /// (capacities grow with each table, so it names the table): the
    /// step is the lookup's two loads, the table pointer then its slot
    /// (`Spec/TraceTableGrowth.tla` matches them as two steps).
    case lookupLoad(context: Int, slot: Int, table: Int)
    /// A lookup found `slot` empty (`found` 0; also a slot beyond the
    /// table) or holding another context than the one it wanted (a
    /// stuttering step of the spec); `table` as for `lookupLoad`.
    case lookupMiss(slot: Int, found: Int, table: Int)
    /// `LookupTrygetLiveOk` / `LookupTrygetLiveFails`.
    case lookupTryGetLive(context: Int, succeeded: Bool)
    /// The lookup's read section is about to end (the read unlock of
    /// `LookupTrygetLive*`, recorded apart).
    case lookupReadUnlock
    /// `LookupPut`: a lease dropped.
    case lookupPut(context: Int)
    /// `Submit`.
    case submit(context: Int)
    /// A submission refused: no free ring slot (a stuttering step).
    case submitRingFull(context: Int)
    /// `Reap`: `events` events reaped from the ring, their slots credited
    /// back.
    case reap(context: Int, events: Int)
    /// `Destroy`: its first step, the slot cleared (`ctx->dead` set).
    case destroy(context: Int)
    /// `Destroy`'s second step: the budget given back.
    case destroyReturnsBudget(context: Int)
    /// `Destroy`'s last step: `users` killed.
    case destroyKillsUsers(context: Int)
    /// A destroy that found the context already dying: another destroy
    /// won (a stuttering step).
    case destroyLost(context: Int)
    /// `Complete`, also of a cancelled request.
    case complete(context: Int)
    /// `RefSwitchConfirm`: a ref's switch to atomic mode ended.
    case switchConfirmed(context: Int, reference: Reference)
    /// `UsersRelease`.
    case usersReleased(context: Int)
    /// `ReqsRelease`: the free is queued behind a grace period.
    case reqsReleased(context: Int)
    /// `FreeRcuCallback`: the grace period ended; the free goes to the
    /// cleanup executor.
    case freeCallback(context: Int)
    /// `FreeWork`: the context is freed.
    case freed(context: Int)
    /// `GrowPublish` of `Spec/TableGrowth.tla`, with the `GrowStart` and
    /// `CopySlot`s before it under the same hold of the table lock: the
    /// table of `capacity` slots, holding the full one's contexts,
    /// replaced it (`rcu_assign_pointer`), whose free is queued behind a
    /// grace period.
    case tableGrown(capacity: Int)
    /// `FreeTable`: the replaced table of `capacity` slots is freed (the
    /// `kfree` that `kfree_rcu` runs).
    case tableFreed(capacity: Int)
    /// A QSBR thread is about to report a quiescent state: the end of
    /// every read section it was in. The table never records it; a caller
    /// that reports quiescent states does (the conformance tests' QSBR
    /// threads).
    case quiescentState
    /// The caller's own read section of the table's flavor began
    /// (`entered`) or is about to end, around calls into the table. The
    /// table never records it; a caller that holds such sections does
    /// (the conformance tests' workload).
    case callerReadSection(entered: Bool)

    /// Whether the spec's action takes the calling thread as a parameter.
    package var isThreadStep: Bool {
        switch self {
        case .lookupReadLock, .lookupLoad, .lookupMiss, .lookupTryGetLive, .lookupReadUnlock, .lookupPut, .submit,
            .submitRingFull, .reap, .destroy, .destroyReturnsBudget, .destroyKillsUsers, .destroyLost, .quiescentState, .callerReadSection:
            true
        default: false
        }
    }

    /// Whether the event is an action of `Spec/Lifecycle.tla` (`destroy`
    /// standing for the whole `Destroy`); the others (read lock and
    /// unlock, destroy's later steps, failed lookups, submissions and
    /// destroys) are steps only trace validation tells apart.
    package var isLifecycleAction: Bool {
        switch self {
        case .lookupReadLock, .lookupMiss, .lookupReadUnlock, .submitRingFull, .destroyReturnsBudget,
            .destroyKillsUsers, .destroyLost, .quiescentState, .callerReadSection, .tableGrown, .tableFreed:
            false
        default: true
        }
    }
}

/// Receives every step of a ``ContextTable``'s lifecycle: the conformance
/// tests' recorder, which checks runs against `Spec/Lifecycle.tla`. A table
/// without one pays a nil check per step.
///
/// A recorder observes; it must not order what it observes. Steps on
/// different threads run concurrently, exactly as without a recorder: no
/// lock may be held across a step, nor taken by every step.
package protocol LifecycleRecorder: AnyObject, Sendable {
    /// The tag of the next create: how events name its context.
    func nextContextTag() -> Int

    /// Runs `body`, one step of the lifecycle, and records the event it
    /// returns (none: nothing the spec sees happened), with when it ran:
    /// the step takes effect somewhere between `body`'s start and end. A
    /// step may run another nested in it (a release run by a put).
    func step<Result>(_ body: () -> (Result, LifecycleEvent?)) -> Result

    /// ``step(_:)`` for a step whose event is known before it runs: a
    /// dropped lease, a completion, a release, a switch callback. These
    /// are the steps that run others nested (a put that runs a release),
    /// and the recorder may record the event as soon as the step begins.
    func step(_ event: LifecycleEvent, performing action: () -> Void)

    /// A context object was allocated for the create tagged `tag`.
    func allocated(_ context: AnyObject, tag: Int)
}

extension LifecycleRecorder {
    package func step(_ event: LifecycleEvent, performing action: () -> Void) {
        step { () -> (Void, LifecycleEvent?) in
            action()
            return ((), event)
        }
    }
}

/// How a context whose `reqs` reached zero is freed: after a grace period
/// of the table's flavor, on the cleanup executor (``DoubleBounce``). A
/// protocol only so that the conformance tests can put the 2018 bug in its
/// place, in their own target, and watch the spec checks reject it.
package protocol ContextReclamation: Sendable {
    /// Arranges for `free` to run on `executor`, no earlier than every
    /// reader of `Flavor` that might still hold the context has left.
    func scheduleFree<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, on executor: some BlockingExecutor, free: @escaping @Sendable () -> Void)
}

/// The fix of 2018: an explicit grace period of the readers' flavor
/// (percpu_ref's own is internal to its mode switch, of its own flavor,
/// and absent in atomic mode), then a context that may block.
package struct DoubleBounce: ContextReclamation {
    package init() {}

    package func scheduleFree<Flavor: RCUFlavor>(
        _ flavor: Flavor.Type, on executor: some BlockingExecutor, free: @escaping @Sendable () -> Void
    ) {
        Flavor.afterGracePeriod(on: executor, execute: free)
    }
}

/// What a table shares with its contexts: its counters, its cleanup
/// executor, how contexts are reclaimed, and its recorder, if any.
final class TableServices: Sendable {
    let counters = LifecycleCounters()
    let cleanup: any BlockingExecutor
    let reclamation: any ContextReclamation
    let recorder: (any LifecycleRecorder)?

    init(cleanup: any BlockingExecutor, reclamation: any ContextReclamation, recorder: (any LifecycleRecorder)?) {
        self.cleanup = cleanup
        self.reclamation = reclamation
        self.recorder = recorder
    }

    /// Runs `body` as one recorded step (see ``LifecycleRecorder``).
    @inline(__always)
    func step<Result>(_ body: () -> (Result, LifecycleEvent?)) -> Result {
        guard let recorder else { return body().0 }
        return recorder.step(body)
    }

    /// The wrapper that records a ref's switch callback as `event`, or nil
    /// with no recorder.
    func switchStep(_ event: LifecycleEvent) -> (@Sendable (() -> Void) -> Void)? {
        guard let recorder else { return nil }
        return { finish in recorder.step(event, performing: finish) }
    }

    /// Records a step that `action` performs entirely.
    @inline(__always)
    func step(_ event: @autoclosure () -> LifecycleEvent, _ action: () -> Void) {
        guard let recorder else { return action() }
        recorder.step(event(), performing: action)
    }
}
