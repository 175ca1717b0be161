import CURCU

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// liburcu's `urcu-qsbr`: quiescent-state-based reclamation, the fastest
/// read side (a read section costs nothing).
///
/// The price is an explicit contract with every reader thread:
/// - register it with ``registerThread()`` before its first read section,
///   and unregister it with ``unregisterThread()`` before it exits;
/// - call ``quiescentState()`` regularly outside read sections (every loop
///   iteration of a worker, say): a grace period waits until every online
///   thread has reported one;
/// - go offline around anything that blocks, with ``whileOffline(_:)``:
///   an online thread that sleeps stalls every grace period.
///
/// Threads are never registered automatically: a thread that was would
/// never report quiescent states and would stall grace periods forever.
public enum QuiescentStateRCU: LiburcuFlavor {
    public static let name = "qsbr"
    public static let _accounting = GracePeriodAccounting()
    public static var _liburcu: curcu_update_functions { curcu_qsbr_update }

    @inlinable
    @inline(__always)
    public static func _readLock() {
        #if QSBRReadSideChecks
        // An unregistered thread and an offline one both have a zero
        // reader counter: one load covers both mistakes, and only for the
        // outermost section.
        let depth = curcu_qsbr_read_depth_get()
        if _slowPath(depth == 0 && !liburcuQsbrReadOngoing()) { readOnUnprotectedThread() }
        curcu_qsbr_read_depth_set(depth &+ 1)
        #endif
        liburcuQsbrReadLock()
    }

    @inlinable
    @inline(__always)
    public static func _readUnlock() {
        liburcuQsbrReadUnlock()
        #if QSBRReadSideChecks
        curcu_qsbr_read_depth_set(curcu_qsbr_read_depth_get() &- 1)
        #endif
    }

    /// ``RCUFlavor/read(_:)``'s section and its online check, without the
    /// nesting depth: `body` makes none of the calls whose checks read it.
    @inlinable
    @inline(__always)
    public static func _leafRead<Result>(_ body: () -> Result) -> Result {
        #if QSBRReadSideChecks
        _requireOnline()
        #endif
        return _leafReadCheckedByBody(body)
    }

    /// ``_leafRead(_:)`` for a body that makes the online check itself, on
    /// every path: PercpuRef's get and put, whose fast path finds it in the
    /// same thread-local load as the thread's counter area
    /// (`curcu_thread_counting.qsbr_online_area`, which going offline and
    /// every unregistration zero), and whose other paths call
    /// ``_requireOnline()``.
    @inlinable
    @inline(__always)
    public static func _leafReadCheckedByBody<Result>(_ body: () -> Result) -> Result {
        liburcuQsbrReadLock()
        defer {
            #if ThreadSanitizerAnnotations
            tsanRelease(tsanGracePeriodToken)
            #endif
            liburcuQsbrReadUnlock()
        }
        return body()
    }

    /// Whether the calling thread is inside a ``RCUFlavor/read(_:)`` body.
    ///
    /// liburcu's `rcu_read_ongoing` for QSBR reports whether the thread is
    /// online, which is not the same thing, so the library tracks the
    /// nesting depth of the thread's sections itself. That tracking is the
    /// package trait `QSBRReadSideChecks`, on by default: with it, every
    /// misuse below is diagnosed in every build. An application that turns
    /// the trait off (for the last nanosecond of a section: see the README's
    /// performance table) gets liburcu's bare read side, this property is
    /// always false, and the checks built on it are off: ``RCUFlavor/synchronize()-9nl5m``,
    /// ``RCUFlavor/barrier()-2rd5d``, ``quiescentState()``, ``threadOffline()`` and
    /// ``whileOffline(_:)`` inside a section, and reading on an unregistered
    /// or offline thread.
    @inlinable
    public static var isInReadSection: Bool {
        #if QSBRReadSideChecks
        curcu_qsbr_read_depth_get() != 0
        #else
        false
        #endif
    }

    /// Whether the calling thread is registered with the QSBR flavor.
    public static var isRegistered: Bool { curcu_qsbr_is_registered() }

    /// Whether the calling thread is registered and online, so that grace
    /// periods wait for it.
    public static var isOnline: Bool { liburcuQsbrReadOngoing() }

    /// Stops the process with a diagnostic unless the calling thread is
    /// registered and online: the check of ``_leafRead(_:)``.
    @inlinable
    @inline(__always)
    public static func _requireOnline() {
        if _slowPath(!liburcuQsbrReadOngoing()) { readOnUnprotectedThread() }
    }

    /// Zeroes the calling thread's `qsbr_online_area` (see ``_leafReadCheckedByBody(_:)``):
    /// at every transition to offline or unregistered.
    static func forgetOnline() { curcu_qsbr_online_counter_area_set(0) }

    @usableFromInline
    static func readOnUnprotectedThread() -> Never {
        requireRegistered(for: "read section")
        rcuMisuse("qsbr: read section on an offline thread; grace periods do not wait for it (call threadOnline() or leave whileOffline first)")
    }

    /// Registers the calling thread as a QSBR reader; it starts online.
    ///
    /// The thread must call ``unregisterThread()`` before it exits: one that
    /// exits registered would leave liburcu waiting for it in every grace
    /// period, so its exit stops the process with a diagnostic instead.
    public static func registerThread() {
        if isRegistered { rcuMisuse("qsbr: registerThread() called twice on the same thread") }
        // Before the thread can count on a QSBR PercpuRef's fast path; a
        // fork step of its own (steps do not nest).
        CounterBlocks.registerCallingThread()
        ForkGuard.excludingFork {
            urcu_qsbr_register_thread()
            ReaderRegistry.addCallingThread(flavor: name, counter: curcu_qsbr_reader_counter(), blocks: curcu_qsbr_reader_blocks)
            // Any non-nil value arms the exit check. In the step: the key's
            // lazy initialisation must not be in progress at a fork.
            pthread_setspecific(exitWhileRegistered, UnsafeRawPointer(bitPattern: 1))
        }
    }

    /// Unregisters the calling thread. Required before a registered thread
    /// exits.
    public static func unregisterThread() {
        requireRegistered(outsideReadSection: "unregisterThread()")
        ForkGuard.excludingFork {
            pthread_setspecific(exitWhileRegistered, nil)
            ReaderRegistry.removeCallingThread(flavor: name)
            forgetOnline()
            urcu_qsbr_unregister_thread()
        }
    }

    /// Runs at the exit of a thread that registered and has not
    /// unregistered since.
    private static let exitWhileRegistered = threadExitKey { _ in
        guard curcu_qsbr_is_registered() else { return }
        rcuMisuse("qsbr: a thread exited while registered; call QuiescentStateRCU.unregisterThread() before it exits (liburcu would wait for it in every grace period)")
    }

    /// Reports a quiescent state: the thread holds no reference obtained in
    /// an earlier read section.
    @inlinable
    public static func quiescentState() {
        if _slowPath(isInReadSection || !curcu_qsbr_is_registered()) {
            requireRegistered(outsideReadSection: "quiescentState()")
        }
        #if ThreadSanitizerAnnotations
        tsanRelease(tsanGracePeriodToken)
        #endif
        liburcuQsbrQuiescentState()
    }

    /// Takes the thread offline: grace periods stop waiting for it until
    /// ``threadOnline()``.
    public static func threadOffline() {
        requireRegistered(outsideReadSection: "threadOffline()")
        goOffline()
    }

    /// Takes a registered thread outside any read section offline.
    static func goOffline() {
        #if ThreadSanitizerAnnotations
        tsanRelease(tsanGracePeriodToken)
        #endif
        forgetOnline()
        liburcuQsbrThreadOffline()
    }

    /// Brings the thread back online after ``threadOffline()``.
    public static func threadOnline() {
        requireRegistered(outsideReadSection: "threadOnline()")
        liburcuQsbrThreadOnline()
    }

    /// Runs `body`, which may block, with the thread offline, and brings it
    /// back online afterwards.
    public static func whileOffline<Result: ~Copyable, Failure: Error>(
        _ body: () throws(Failure) -> Result
    ) throws(Failure) -> Result {
        threadOffline()
        defer { liburcuQsbrThreadOnline() }
        return try body()
    }

    /// `call_rcu` needs a registered, online caller; an unregistered thread
    /// is registered for the duration of the call, an offline one brought
    /// online, so that callers need not be QSBR readers.
    public static func withRegisteredThread<Result>(_ body: () -> Result) -> Result {
        if !isRegistered {
            CounterBlocks.registerCallingThread()
            ForkGuard.excludingFork { urcu_qsbr_register_thread() }
            defer { ForkGuard.excludingFork { forgetOnline(); urcu_qsbr_unregister_thread() } }
            return body()
        }
        if !isOnline {
            liburcuQsbrThreadOnline()
            defer { goOffline() }
            return body()
        }
        return body()
    }

    static func requireRegistered(for operation: String) {
        if !isRegistered {
            rcuMisuse("qsbr: \(operation) on a thread that is not registered; call QuiescentStateRCU.registerThread() first")
        }
    }

    @usableFromInline
    static func requireRegistered(outsideReadSection operation: String) {
        requireRegistered(for: operation)
        if isInReadSection {
            rcuMisuse("qsbr: \(operation) inside a read section; it would end the protection of the references the section holds")
        }
    }
}
