import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Callbacks still queued when the process exits: they run, or they are
/// reported. Never lost in silence.
///
/// From the first ``RCUFlavor/call(_:)`` or ``RCUFlavor/retire(_:)`` of a
/// liburcu flavor, an `atexit` handler waits, at exit, for each flavor's
/// queued callbacks to run (its ``RCUFlavor/barrier()``, on a thread of
/// its own) for at most ``drainTimeout`` seconds, then writes one line to
/// standard error for each flavor that still has callbacks pending:
/// `swift-urcu: 12 memb callbacks had not run at exit (waited 5.0 s)`.
/// A process that ends with `_exit` or a signal runs no handler.
public enum RCUExit {
    private static let timeoutNanoseconds = Atomic<UInt64>(5_000_000_000)
    private static let armed = Atomic<Bool>(false)

    /// Seconds exit waits for each flavor's queued callbacks (5 by
    /// default); `nil`: report them without waiting.
    public static var drainTimeout: Double? {
        get {
            let value = timeoutNanoseconds.load(ordering: .relaxed)
            return value == 0 ? nil : Double(value) / 1e9
        }
        set { timeoutNanoseconds.store(newValue.map { UInt64(max($0, 1e-9) * 1e9) } ?? 0, ordering: .relaxed) }
    }

    /// Installs the exit handler, once.
    @inline(__always)
    static func arm() {
        if _slowPath(!armed.load(ordering: .relaxed)) { armSlowly() }
    }

    private static func armSlowly() {
        guard !armed.exchange(true, ordering: .acquiringAndReleasing) else { return }
        atexit { RCUExit.drainAll() }
    }

    private static func drainAll() {
        drain(MembarrierRCU.self)
        drain(MemoryBarrierRCU.self)
        drain(BulletproofRCU.self)
        drain(QuiescentStateRCU.self)
    }

    private static func drain<Flavor: LiburcuFlavor>(_: Flavor.Type) {
        guard Flavor.pendingCallbacks > 0 else { return }
        let timeout = timeoutNanoseconds.load(ordering: .relaxed)
        var waited = 0.0
        // barrier() would wait for itself from inside a read section or a
        // callback: those exits only report.
        if timeout > 0 && Flavor.mayWaitForCallbacks {
            let started = monotonicSeconds()
            // The barrier runs on a thread of its own so that a grace period
            // that never ends (a reader stuck in a section) cannot hang the
            // exit: the process ends with that thread still waiting.
            if startDetachedThread({ Flavor.barrier() }) == 0 {
                while Flavor.pendingCallbacks > 0 && monotonicSeconds() - started < Double(timeout) / 1e9 {
                    usleep(1_000)
                }
            }
            waited = monotonicSeconds() - started
        }
        let left = Flavor.pendingCallbacks
        guard left > 0 else { return }
        let line = "swift-urcu: \(left) \(Flavor.name) callback\(left == 1 ? "" : "s") had not run at exit "
            + "(waited \((waited * 10).rounded() / 10) s)\n"
        writeStandardError(line)
    }
}

/// Runs `body` on a new detached thread. Returns `pthread_create`'s
/// status: 0, or why there is no thread.
func startDetachedThread(_ body: @escaping () -> Void) -> Int32 {
    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body))
    let status = pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box.toOpaque())
    guard status == 0 else {
        box.release()
        return status
    }
    pthread_detach(thread)
    return 0
}
