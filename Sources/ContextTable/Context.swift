import PercpuRef
import Synchronization
import URCU

/// One context (`struct kioctx`). Internal: users reach it through a
/// ``ContextLease`` or a ``ContextRequest``.
// @unchecked: `id` is written once, under the table lock, before the
// context is published (RCUPointer.assign orders it before the pointer);
// everything else is immutable or synchronised.
final class Context<Flavor: RCUFlavor>: @unchecked Sendable {
    var id = ContextID(slot: -1, generation: 0)
    /// The name lifecycle events give the context (0 with no recorder).
    let tag: Int
    let maxRequests: Int
    let users: PercpuRef<Flavor>
    let reqs: PercpuRef<Flavor>
    let ring: CompletionRing
    /// Set once by the destroy that wins (`ctx->dead`).
    let dead = Atomic<Bool>(false)
    /// Requests in flight, for the cancel path (`ctx->active_reqs`).
    let active = Lock<[ObjectIdentifier: ContextRequest<Flavor>]>([:])
    private let freed = Atomic<Bool>(false)
    /// The table's counters, cleanup executor and recorder, held strongly:
    /// a context may outlive its table (a lease, a request, a pending
    /// free), and its teardown still reports there.
    let services: TableServices
    private var counters: LifecycleCounters { services.counters }
    /// Keeps the context alive from creation until its explicit free:
    /// the release callbacks reach it through this cell, as the kernel's
    /// reach the kioctx through `container_of`.
    private let lifeline: Lifeline<Flavor>

    /// - Parameter atomicReferences: `users` and `reqs` start in atomic
    ///   mode (the spec's `RefInitModes`; the conformance tests use both).
    init(tag: Int, maxRequests: Int, atomicReferences: Bool, services: TableServices) {
        let lifeline = Lifeline<Flavor>()
        self.tag = tag
        self.maxRequests = maxRequests
        self.services = services
        self.lifeline = lifeline
        ring = CompletionRing(requests: maxRequests)
        let options: PercpuRefOptions = atomicReferences ? .startAtomic : []
        users = PercpuRef(
            options: options, completingSwitch: services.switchStep(.switchConfirmed(context: tag, reference: .users)),
            release: { lifeline.context?.usersReleased() })
        reqs = PercpuRef(
            options: options, completingSwitch: services.switchStep(.switchConfirmed(context: tag, reference: .reqs)),
            release: { lifeline.context?.reqsReleased() })
        // The reference usersReleased() drops last, after cancelling: reqs
        // cannot reach zero while requests are still being cancelled (the
        // kernel's free_ioctx_users).
        reqs.get()
        lifeline.hold(self)
        services.counters.live.increment()
        services.counters.objects.increment()
        services.recorder?.allocated(self, tag: tag)
    }

    deinit {
        counters.objects.decrement()
    }

    /// Whether the context has been freed.
    var isFreed: Bool { freed.load(ordering: .acquiring) }

    /// Stops the process if the context has been freed: a reader reached
    /// it too late, which the grace period must make impossible.
    func checkAlive(during operation: String) {
        if isFreed {
            counters.useAfterFree.increment()
            rcuMisuse("ContextTable: \(operation) reached \(id) after it was freed (use after free)")
        }
    }

    func submit() throws(ContextError) -> ContextRequest<Flavor> {
        checkAlive(during: "submit")
        let submitted = services.step { () -> (ContextRequest<Flavor>?, LifecycleEvent?) in
            guard ring.reserveSlot() else { return (nil, .submitRingFull(context: tag)) }
            reqs.get()
            let request = ContextRequest(context: self)
            active.withLock { $0[ObjectIdentifier(request)] = request }
            return (request, .submit(context: tag))
        }
        guard let submitted else { throw .ringFull }
        counters.submitted.increment()
        return submitted
    }

    /// Reaps up to `maximum` events and credits their slots back (one step:
    /// the ring's lock covers both).
    func reap(maximum: Int) -> [CompletionEvent] {
        services.step { () -> ([CompletionEvent], LifecycleEvent?) in
            let reaped = ring.reap(maximum: maximum)
            return (reaped, .reap(context: tag, events: reaped.count))
        }
    }

    /// Posts the request's event and drops its `reqs` reference
    /// (`aio_complete`). Called once per request, by whichever of complete
    /// and cancel wins.
    func finish(_ request: ContextRequest<Flavor>, result: Int) {
        checkAlive(during: "complete")
        counters.completed.increment()
        services.step(.complete(context: tag)) {
            active.withLock { _ = $0.removeValue(forKey: ObjectIdentifier(request)) }
            ring.post(CompletionEvent(request: request.serial, result: result))
            reqs.put()
        }
    }

    /// `free_ioctx_users`: no lookup holds the context any more and none
    /// can start; cancel what is in flight, then let `reqs` die.
    private func usersReleased() {
        services.step(.usersReleased(context: tag)) {
            let inFlight = active.withLock { Array($0.values) }
            for request in inFlight where request.cancel() {
                counters.cancelled.increment()
            }
            reqs.kill()
            reqs.put()
        }
    }

    /// `free_ioctx_reqs`: the last request is done. Readers of the table's
    /// flavor may still hold the context, found before the slot was
    /// cleared: wait for a grace period of that flavor explicitly, then
    /// free where blocking is allowed.
    private func reqsReleased() {
        services.step(.reqsReleased(context: tag)) {
            counters.pendingFrees.increment()
            services.reclamation.scheduleFree(
                Flavor.self, on: CleanupHandOff(context: tag, services: services)) { self.free() }
        }
    }

    /// `free_ioctx`: the context's memory is returned.
    private func free() {
        services.step(.freed(context: tag)) {
            // Counted before the teardown drops `live`: waitForAll settles
            // once `live` is zero, and must find this free counted by then.
            counters.pendingFrees.decrement()
            counters.freed.increment()
            tearDown()
        }
    }

    /// Undoes a create whose table insert failed: the context was never
    /// published, so nothing can reach it and it is freed at once, its refs
    /// retired without a kill (the kernel's error path frees them the same
    /// way).
    func abandon() {
        tearDown()
    }

    /// What every end of a context gives back: its ring, its refs, its
    /// place among the live contexts, and the hold that kept it alive.
    private func tearDown() {
        guard !freed.exchange(true, ordering: .acquiringAndReleasing) else {
            rcuMisuse("ContextTable: \(id) freed twice")
        }
        ring.deallocate()
        users.exit()
        reqs.exit()
        counters.live.decrement()
        lifeline.release()
    }
}

/// The second bounce of the free: the grace-period callback hands the free
/// to the table's cleanup executor, and that hand-off is one recorded step.
struct CleanupHandOff: BlockingExecutor {
    let context: Int
    let services: TableServices

    func execute(_ work: @escaping @Sendable () -> Void) {
        services.step(.freeCallback(context: context)) { services.cleanup.execute(work) }
    }
}

/// The strong reference that keeps a context alive until its explicit free.
final class Lifeline<Flavor: RCUFlavor>: Sendable {
    private let storage = Lock<Context<Flavor>?>(nil)

    func hold(_ context: Context<Flavor>) { storage.withLock { $0 = context } }
    func release() { storage.withLock { $0 = nil } }
    var context: Context<Flavor>? { storage.withLock { $0 } }
}

/// A request in flight on a context (`struct aio_kiocb`). It holds a `reqs`
/// reference from ``ContextLease/submit()`` until it is completed or
/// cancelled, whichever comes first; finishing also lets go of the context,
/// as the kernel frees the kiocb.
public final class ContextRequest<Flavor: RCUFlavor>: Sendable {
    /// The context until the request finishes; taking it out is what
    /// decides which of complete and cancel wins.
    private let context: Lock<Context<Flavor>?>
    /// The context the request belongs to.
    public let contextID: ContextID
    let serial: Int

    init(context: Context<Flavor>) {
        self.context = Lock(context)
        contextID = context.id
        serial = RequestSerials.next()
    }

    /// Completes the request with `result` (`aio_complete`). Returns false
    /// if it was already completed or cancelled.
    @discardableResult
    public func complete(result: Int = 0) -> Bool {
        guard let context = context.withLock({ $0.take() }) else { return false }
        context.finish(self, result: result)
        return true
    }

    /// Cancels the request (`kiocb_cancel`): it completes with
    /// ``CompletionEvent/cancelled``. Returns false if it had already
    /// finished.
    @discardableResult
    public func cancel() -> Bool {
        complete(result: CompletionEvent.cancelled)
    }
}

enum RequestSerials {
    private static let counter = Atomic<Int>(0)
    static func next() -> Int { counter.wrappingAdd(1, ordering: .relaxed).newValue }
}
