import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A flavor implemented by liburcu. The update side (grace periods,
/// callbacks, barrier, callback workers) is shared by all four through
/// `_liburcu`; each flavor supplies its read side and its registration rule.
public protocol LiburcuFlavor: RCUFlavor {
    /// The flavor's update-side functions (see `CURCU.h`).
    static var _liburcu: curcu_update_functions { get }

    /// Runs `body` on a thread liburcu accepts as a `call_rcu` caller
    /// (`call_rcu` must be called by registered threads).
    static func withRegisteredThread<Result>(_ body: () -> Result) -> Result
}

/// The four flavors of liburcu, for what the library does for each of them
/// (the exit drain, the stall watchdog).
let liburcuFlavors: [any LiburcuFlavor.Type] = [
    MembarrierRCU.self, MemoryBarrierRCU.self, BulletproofRCU.self, QuiescentStateRCU.self,
]

/// Whether the calling code runs in a Swift task (synchronous code called
/// from async code included): then it runs on a thread that must not sleep.
var isInTask: Bool { withUnsafeCurrentTask { $0 != nil } }

extension LiburcuFlavor {
    public static func _synchronize() {
        RCUStallMonitor.watch(flavor: name) { whileBlocked { _liburcu.synchronize_rcu() } }
        #if ThreadSanitizerAnnotations
        tsanAcquire(tsanGracePeriodToken)
        #endif
    }

    public static func call(_ callback: @escaping @Sendable () -> Void) {
        applyBackPressure()
        _callWithoutBackPressure(callback)
    }

    public static func _callWithoutBackPressure(_ callback: @escaping @Sendable () -> Void) {
        enqueue(CallbackNode.runClosure) { CallbackNode.make(running: callback, accounting: _accounting) }
    }

    /// Grace periods the flavor's grace-period thread has run so far: how
    /// many waiters share each one is what the batching tests measure.
    package static var gracePeriodsRunForWaiters: Int { _accounting.gracePeriodThread.gracePeriodsRun }

    /// Items handed to the flavor's grace-period thread so far.
    package static var waitersQueuedForGracePeriods: UInt64 { _accounting.gracePeriodThread.lastTicket }

    /// Items whose grace period has started on that thread.
    package static var waitersWhoseGracePeriodStarted: UInt64 { _accounting.gracePeriodThread.startedTicket }

    public static func _afterGracePeriod(_ item: @escaping @Sendable () -> Void) {
        RCUExit.arm()
        // Counted as a callback: the exit drain, barrier() and the stall
        // watchdog wait for it and report it like one.
        _accounting.callbackQueued()
        _ = _accounting.gracePeriodThread.afterGracePeriod(synchronize: { _synchronize() }) {
            item()
            _accounting.callbackRan()
        }
    }

    public static func retire(_ object: Unmanaged<AnyObject>) {
        applyBackPressure()
        enqueue(CallbackNode.runRelease) { CallbackNode.make(releasing: object, accounting: _accounting) }
    }

    /// Hands the node `makeNode` builds to liburcu's call_rcu, to be run by
    /// `trampoline`: the one path of every callback.
    @inline(__always)
    private static func enqueue(_ trampoline: CallbackNode.Trampoline, _ makeNode: () -> CallbackNode) {
        RCUExit.arm()
        requireDefaultCallbackThread()
        let node = makeNode()
        #if ThreadSanitizerAnnotations
        tsanRelease(UnsafeMutableRawPointer(node.head))
        #endif
        withRegisteredThread { _liburcu.call_rcu(node.head, trampoline) }
    }

    /// An upper bound on callbacks queued and not yet run; `nil` (the
    /// default) for none.
    ///
    /// When a flood of ``RCUFlavor/call(_:)`` and ``RCUFlavor/retire(_:)`` outruns the callback
    /// thread, memory grows with the queue. With a limit, a call that finds
    /// the limit reached waits until callbacks have run below it: a thread
    /// sleeps (an online QSBR thread goes offline meanwhile), and the
    /// `async` forms (`await call(_:)`, `await retire(_:)`,
    /// ``RCUFlavor/waitForCallbackRoom()``) suspend. Calls that cannot wait go
    /// through: inside a read section of this flavor or on one of its
    /// callback threads (waiting could wait for itself), and synchronous
    /// calls made from a task (sleeping would hold a thread of Swift's
    /// cooperative pool; use the `async` forms there). The library's own
    /// bookkeeping callbacks (``RCUFlavor/startPoll()``, a `PercpuRef` switch) never
    /// wait.
    public static var pendingCallbackLimit: Int? {
        get { _accounting.pendingLimit }
        set { _accounting.pendingLimit = newValue }
    }

    @inline(__always)
    static func applyBackPressure() {
        guard _slowPath(!_accounting.hasRoom) else { return }
        if mayWaitForCallbacks && !isInTask { whileBlocked { _accounting.waitForRoom() } }
    }

    /// Whether the calling thread may wait for this flavor's callbacks:
    /// inside a read section, or on a callback thread, it would wait for
    /// itself.
    static var mayWaitForCallbacks: Bool { !isInReadSection && !isCallbackThread }

    @available(*, noasync, message: "blocks until callbacks have run; use 'await barrier()' in async code")
    public static func barrier() {
        requireMayWaitForBarrier()
        whileBlocked { waitForCallbacksQueuedSoFar() }
    }

    /// ``barrier()`` for async code: the task suspends while a thread of
    /// its own waits.
    public static func barrier() async {
        requireMayWaitForBarrier()
        await onThreadOfItsOwn { waitForCallbacksQueuedSoFar() }
    }

    /// liburcu's barrier, and the grace-period thread's items handed in
    /// before it (`afterGracePeriod` work is a callback to the user).
    private static func waitForCallbacksQueuedSoFar() {
        let gracePeriodThread = _accounting.gracePeriodThread
        let ticket = gracePeriodThread.lastTicket
        _liburcu.barrier()
        gracePeriodThread.waitUntilServed(ticket)
    }

    private static func requireMayWaitForBarrier() {
        if isInReadSection {
            rcuMisuse("\(name): barrier() called inside a read section; it would wait for callbacks that wait for this section")
        }
        if isCallbackThread {
            rcuMisuse("\(name): barrier() called from a call_rcu callback; the callback thread would wait for itself forever")
        }
    }

    /// Whether the calling thread is one of this flavor's callback threads.
    ///
    /// A callback thread sets its own `call_rcu_data` as its thread data, so
    /// it is the one thread whose thread data names itself.
    public static var isCallbackThread: Bool {
        guard let data = _liburcu.get_thread_call_rcu_data() else { return false }
        return pthread_equal(_liburcu.get_call_rcu_thread(data), pthread_self()) != 0
    }
}

/// One queued callback: liburcu's `rcu_head` followed by its payload, in a
/// single allocation.
///
/// The payload is either a Swift closure or an object to release. The
/// `rcu_head` comes first so the pointer liburcu hands back to the
/// trampoline is the pointer to the whole node.
struct CallbackNode {
    typealias Closure = @Sendable () -> Void
    typealias Trampoline = @convention(c) (UnsafeMutablePointer<rcu_head>?) -> Void

    /// The closure wrapped in a struct: stored through a generic pointer as
    /// a bare function value, it would be re-abstracted, which allocates a
    /// thunk per callback; a struct field keeps its own representation.
    struct Payload {
        let closure: Closure
    }

    private static let payloadOffset = MemoryLayout<rcu_head>.stride
    private static let accountingOffset = payloadOffset + MemoryLayout<Payload>.stride
    static let size = accountingOffset + MemoryLayout<Unmanaged<GracePeriodAccounting>>.stride
    static let alignment = MemoryLayout<Payload>.alignment

    let raw: UnsafeMutableRawPointer

    var head: UnsafeMutablePointer<rcu_head> { raw.assumingMemoryBound(to: rcu_head.self) }

    private static func allocate(accounting: GracePeriodAccounting) -> CallbackNode {
        let raw = CallbackNodePool.take()
        raw.bindMemory(to: rcu_head.self, capacity: 1)
        // The accounting object lives as long as its flavor (a static), so
        // an unretained reference is enough.
        (raw + accountingOffset).initializeMemory(
            as: Unmanaged<GracePeriodAccounting>.self, to: .passUnretained(accounting))
        accounting.callbackQueued()
        return CallbackNode(raw: raw)
    }

    static func make(running closure: consuming @escaping Closure, accounting: GracePeriodAccounting) -> CallbackNode {
        let node = allocate(accounting: accounting)
        (node.raw + payloadOffset).initializeMemory(as: Payload.self, to: Payload(closure: closure))
        return node
    }

    static func make(releasing object: Unmanaged<AnyObject>, accounting: GracePeriodAccounting) -> CallbackNode {
        let node = allocate(accounting: accounting)
        (node.raw + payloadOffset).initializeMemory(as: Unmanaged<AnyObject>.self, to: object)
        return node
    }

    /// Recycles the node and counts the callback out. Called after the
    /// payload has run, so `pendingCallbacks == 0` means every payload has
    /// finished.
    private func finish() {
        let accounting = (raw + Self.accountingOffset).load(as: Unmanaged<GracePeriodAccounting>.self)
        CallbackNodePool.recycle(raw)
        accounting._withUnsafeGuaranteedRef { $0.callbackRan() }
    }

    static let runClosure: CallbackNode.Trampoline = { head in
        // liburcu's call_rcu threads are QSBR readers Swift did not
        // register: a callback may count on a QSBR PercpuRef's fast path.
        CounterBlocks.registerCallingThread()
        #if ThreadSanitizerAnnotations
        tsanAcquire(UnsafeMutableRawPointer(head!))
        tsanAcquire(tsanGracePeriodToken)
        #endif
        let node = CallbackNode(raw: UnsafeMutableRawPointer(head!))
        do {
            // The closure, and what it captured, is released at the end of
            // this scope: before the callback is counted out.
            let payload = (node.raw + payloadOffset).assumingMemoryBound(to: Payload.self).move()
            payload.closure()
        }
        node.finish()
    }

    static let runRelease: CallbackNode.Trampoline = { head in
        // liburcu's call_rcu threads are QSBR readers Swift did not
        // register: a callback may count on a QSBR PercpuRef's fast path.
        CounterBlocks.registerCallingThread()
        #if ThreadSanitizerAnnotations
        tsanAcquire(UnsafeMutableRawPointer(head!))
        tsanAcquire(tsanGracePeriodToken)
        #endif
        let node = CallbackNode(raw: UnsafeMutableRawPointer(head!))
        let object = (node.raw + payloadOffset).load(as: Unmanaged<AnyObject>.self)
        object.release()
        node.finish()
    }
}
