/// An RCU domain: its read-side critical sections, grace periods and
/// callbacks.
///
/// A grace period of one flavor waits only for readers of that same flavor.
/// Encoding the flavor in the type system makes the classic mistake (readers
/// under one flavor, grace periods of another, as in the 2018 fs/aio bug)
/// a compile-time error: ``RCUPointer`` and ``RCUBox`` are generic over
/// their flavor, and can be read only with a ``ReadSection`` of that flavor.
///
/// The library's flavors wrap liburcu: ``MembarrierRCU`` (the default),
/// ``QuiescentStateRCU``, ``MemoryBarrierRCU`` and ``BulletproofRCU``.
/// Conformers are caseless enums: a flavor is a namespace of static
/// operations on process-wide state.
public protocol RCUFlavor: Sendable {
    /// A short name used in diagnostics ("memb", "qsbr", "mb", "bp").
    static var name: String { get }

    /// Enters a read-side critical section. Use ``read(_:)``: these hooks
    /// exist so generic code can be specialised and inlined.
    static func _readLock()

    /// Leaves the read-side critical section entered by ``_readLock()``.
    static func _readUnlock()

    /// Runs `body` in a read-side critical section, for the library's fast
    /// paths (`PercpuRef`'s get and put) whose body calls nothing of RCU:
    /// no section, grace period, barrier, callback or quiescent state. It
    /// protects what ``read(_:)`` protects; a flavor may skip bookkeeping
    /// that only such calls need (QSBR's nesting depth, which its misuse
    /// checks read). The default is ``read(_:)``.
    static func _leafRead<Result>(_ body: () -> Result) -> Result

    /// Whether the calling thread is inside a read-side critical section of
    /// this flavor (`rcu_read_ongoing`).
    static var isInReadSection: Bool { get }

    /// Waits for a grace period without checking for misuse. Use
    /// ``synchronize()``.
    static func _synchronize()

    /// Runs `callback` after a grace period has elapsed (`call_rcu`).
    ///
    /// The callback runs on a callback thread of the flavor; it must not
    /// block for long, since it delays every callback queued behind it.
    /// Use ``afterGracePeriod(on:execute:)-(BlockingExecutor,_)`` for work that may block.
    static func call(_ callback: @escaping @Sendable () -> Void)

    /// ``call(_:)`` for the library's own bookkeeping callbacks (a polled
    /// grace period, a ``PercpuRef`` switch), which never wait for
    /// back-pressure: the APIs that queue them promise not to block.
    static func _callWithoutBackPressure(_ callback: @escaping @Sendable () -> Void)

    /// Runs `item`, which must not block, after a grace period, as soon as
    /// one can end: the mechanism behind `await synchronize()`,
    /// ``startPoll()`` and ``afterGracePeriod(on:execute:)``. Never blocks
    /// and never waits for back-pressure. liburcu flavors run it on a
    /// grace-period thread of their own; the default is a callback.
    static func _afterGracePeriod(_ item: @escaping @Sendable () -> Void)

    /// Releases `object` after a grace period: the retire step of every
    /// update. Equivalent to `call { object.release() }`; liburcu flavors
    /// do it with a single allocation.
    static func retire(_ object: Unmanaged<AnyObject>)

    /// Waits until every callback queued before this call has run
    /// (`rcu_barrier`).
    ///
    /// Must not be called inside a read section of this flavor, nor from one
    /// of the flavor's callbacks: both would wait for themselves. Blocks the
    /// calling thread: async code uses `await barrier()`.
    @available(*, noasync, message: "blocks until callbacks have run; use 'await barrier()' in async code")
    static func barrier()

    /// ``barrier()`` for async code: suspends instead of blocking.
    static func barrier() async

    /// The flavor's grace-period and callback accounting, shared by the
    /// polling API and by ``RCUFlavor/pendingCallbacks``: an implementation detail of
    /// the library's flavors.
    static var _accounting: GracePeriodAccounting { get }
}

extension RCUFlavor {
    public static func _callWithoutBackPressure(_ callback: @escaping @Sendable () -> Void) {
        call(callback)
    }

    public static func _afterGracePeriod(_ item: @escaping @Sendable () -> Void) {
        _callWithoutBackPressure(item)
    }

    @inlinable
    @inline(__always)
    public static func _leafRead<Result>(_ body: () -> Result) -> Result {
        read { _ in body() }
    }
}

/// Proof that the current scope is inside a read-side critical section of
/// `Flavor`.
///
/// Only ``RCUFlavor/read(_:)`` creates one, and it lends it to its body as a
/// `borrowing` parameter: the token cannot be copied, stored or returned, so
/// it cannot outlive the section. APIs that dereference RCU-protected data
/// take it as their first argument.
public struct ReadSection<Flavor: RCUFlavor>: ~Copyable {
    @usableFromInline
    init() {}
}

extension RCUFlavor {
    /// Runs `body` inside a read-side critical section of this flavor.
    ///
    /// Objects reached through ``RCUPointer/dereference(in:_:)`` stay valid
    /// until `body` returns, even if an updater replaces them meanwhile.
    /// Sections nest. The body is synchronous on purpose: a section must
    /// begin and end on the same thread, so it cannot span an `await`.
    ///
    /// - memb and mb register the calling thread on first use.
    /// - qsbr requires a registered, online thread
    ///   (``QuiescentStateRCU/registerThread()``).
    /// - Never call ``synchronize()-9nl5m`` or ``barrier()-2rd5d`` in `body`.
    @inlinable
    @inline(__always)
    public static func read<Result: ~Copyable, Failure: Error>(
        _ body: (borrowing ReadSection<Self>) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        _readLock()
        defer {
            #if ThreadSanitizerAnnotations
            tsanRelease(tsanGracePeriodToken)
            #endif
            _readUnlock()
        }
        return try body(ReadSection())
    }

    /// Waits for a grace period: returns once every read section of this
    /// flavor that was running when the call began has ended
    /// (`synchronize_rcu`).
    ///
    /// Calling it inside a read section of the same flavor would wait for
    /// itself forever; it stops the process with a diagnostic instead.
    /// Blocks the calling thread (an online QSBR caller goes offline
    /// meanwhile): async code uses `await synchronize()`.
    @available(*, noasync, message: "blocks the thread; use 'await synchronize()' in async code")
    public static func synchronize() {
        if isInReadSection {
            rcuMisuse("\(name): synchronize() called inside a read section of the same flavor; it would wait for itself forever")
        }
        let covered = _accounting.startedTickets
        _synchronize()
        _accounting.complete(through: covered)
    }

    /// Waits for a grace period without blocking the calling thread: the
    /// task suspends, and resumes once a grace period that started after
    /// the call has ended. With a liburcu flavor that takes a few grace
    /// periods at most (the flavor's grace-period thread serves every task
    /// waiting when a grace period starts), not a callback's latency.
    public static func synchronize() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            _afterGracePeriod { continuation.resume() }
        }
    }

    /// Suspends until fewer than `pendingCallbackLimit` callbacks are
    /// pending (at once if there is no limit): back-pressure for async
    /// code, which must not sleep on a thread of the cooperative pool.
    public static func waitForCallbackRoom() async {
        var delay: UInt64 = 20_000
        while !_accounting.hasRoom {
            try? await Task.sleep(nanoseconds: delay)
            delay = min(delay * 2, 1_000_000)
        }
    }

    /// ``call(_:)`` for async code: suspends, rather than sleeps, while
    /// the flavor's pending-callback limit is reached.
    public static func call(_ callback: @escaping @Sendable () -> Void) async {
        await waitForCallbackRoom()
        _callWithoutBackPressure(callback)
    }

    /// ``retire(_:)`` for async code: suspends, rather than sleeps, while
    /// the flavor's pending-callback limit is reached.
    public static func retire(_ object: Unmanaged<AnyObject>) async {
        await waitForCallbackRoom()
        // The synchronous form, which never sleeps in a task (a nested
        // function is a synchronous context, where it is the one chosen).
        func retireWithoutSleeping() { retire(object) }
        retireWithoutSleeping()
    }

    /// The number of callbacks queued with ``call(_:)`` or ``retire(_:)``
    /// that have not run yet.
    public static var pendingCallbacks: Int { _accounting.pendingCallbacks }

    /// The number of callbacks of this flavor that have run, each after a
    /// grace period.
    public static var callbacksRun: Int { _accounting.callbacksRun }
}
