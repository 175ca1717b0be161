import CURCU

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The default flavor: liburcu's `urcu-memb`.
///
/// Readers pay a thread-local increment and a compiler barrier; the
/// `membarrier` system call moves the memory barriers to the update side.
/// Threads register on their first read section and unregister when they
/// exit. Pick it unless you have a reason for another.
public enum MembarrierRCU: LiburcuFlavor {
    public static let name = "memb"
    public static let _accounting = GracePeriodAccounting()
    public static var _liburcu: curcu_update_functions { curcu_memb_update }

    @inlinable
    @inline(__always)
    public static func _readLock() {
        if _slowPath(!curcu_memb_is_registered()) { registerWithMemb() }
        liburcuMembReadLock()
    }

    @inlinable
    @inline(__always)
    public static func _readUnlock() { liburcuMembReadUnlock() }

    @inlinable
    public static var isInReadSection: Bool { liburcuMembReadOngoing() }

    public static func withRegisteredThread<Result>(_ body: () -> Result) -> Result {
        if !curcu_memb_is_registered() { registerWithMemb() }
        return body()
    }
}

/// liburcu's `urcu-mb`: memory barriers on both sides.
///
/// Readers pay a full memory barrier per section; grace periods are fast
/// and need no system call. Pick it when `membarrier` is unavailable or
/// grace-period latency matters more than read cost. Threads register
/// automatically, as with ``MembarrierRCU``.
public enum MemoryBarrierRCU: LiburcuFlavor {
    public static let name = "mb"
    public static let _accounting = GracePeriodAccounting()
    public static var _liburcu: curcu_update_functions { curcu_mb_update }

    @inlinable
    @inline(__always)
    public static func _readLock() {
        if _slowPath(!curcu_mb_is_registered()) { registerWithMb() }
        liburcuMbReadLock()
    }

    @inlinable
    @inline(__always)
    public static func _readUnlock() { liburcuMbReadUnlock() }

    @inlinable
    public static var isInReadSection: Bool { liburcuMbReadOngoing() }

    public static func withRegisteredThread<Result>(_ body: () -> Result) -> Result {
        if !curcu_mb_is_registered() { registerWithMb() }
        return body()
    }
}

/// liburcu's `urcu-bp` ("bulletproof"): no registration at all.
///
/// For libraries that cannot control the threads calling them: any thread
/// may read, and liburcu reclaims the state of threads that exit. Readers
/// cost about as much as ``MembarrierRCU``; grace periods are slower.
public enum BulletproofRCU: LiburcuFlavor {
    public static let name = "bp"
    public static let _accounting = GracePeriodAccounting()
    public static var _liburcu: curcu_update_functions { curcu_bp_update }

    @inlinable
    @inline(__always)
    public static func _readLock() { liburcuBpReadLock() }

    @inlinable
    @inline(__always)
    public static func _readUnlock() { liburcuBpReadUnlock() }

    @inlinable
    public static var isInReadSection: Bool { liburcuBpReadOngoing() }

    public static func withRegisteredThread<Result>(_ body: () -> Result) -> Result { body() }
}

/// Registers threads of an auto-registering flavor on first use and
/// unregisters them when they exit, through a thread-specific key whose
/// destructor runs at thread exit. A thread that exits while registered
/// would otherwise stall every later grace period.
final class AutoRegistration: Sendable {
    private let key: pthread_key_t
    private let flavor: String
    private let register: @convention(c) () -> Void
    private let counter: @convention(c) () -> UnsafeMutablePointer<UInt>?
    private let blocks: ReaderRegistry.BlockingTest

    init(
        flavor: String,
        register: @escaping @convention(c) () -> Void,
        counter: @escaping @convention(c) () -> UnsafeMutablePointer<UInt>?,
        blocks: @escaping ReaderRegistry.BlockingTest,
        unregisterAtExit: @escaping @convention(c) (UnsafeMutableRawPointer?) -> Void
    ) {
        self.key = threadExitKey(unregisterAtExit)
        self.flavor = flavor
        self.register = register
        self.counter = counter
        self.blocks = blocks
    }

    /// Registers the calling thread. Runs inside a ``ForkGuard`` step.
    func registerCallingThread() {
        register()
        ReaderRegistry.addCallingThread(flavor: flavor, counter: counter()!, blocks: blocks)
        // Any non-nil value arms the destructor.
        pthread_setspecific(key, UnsafeRawPointer(bitPattern: 1))
    }
}

// One fork step each, around the first use of the registration object
// too: a lazy global's initialisation in progress at a fork would leave
// the child waiting for it forever.
@usableFromInline
func registerWithMemb() { ForkGuard.excludingFork { membRegistration.registerCallingThread() } }

@usableFromInline
func registerWithMb() { ForkGuard.excludingFork { mbRegistration.registerCallingThread() } }

// The destructors check the registered bit because liburcu's unregister
// corrupts its reader list when called for a thread that is not in it.
let membRegistration = AutoRegistration(
    flavor: "memb", register: urcu_memb_register_thread, counter: curcu_memb_reader_counter,
    blocks: curcu_memb_reader_blocks
) { _ in
    guard curcu_memb_is_registered() else { return }
    ForkGuard.excludingFork {
        ReaderRegistry.removeCallingThread(flavor: "memb")
        urcu_memb_unregister_thread()
    }
}

let mbRegistration = AutoRegistration(
    flavor: "mb", register: urcu_mb_register_thread, counter: curcu_mb_reader_counter,
    blocks: curcu_mb_reader_blocks
) { _ in
    guard curcu_mb_is_registered() else { return }
    ForkGuard.excludingFork {
        ReaderRegistry.removeCallingThread(flavor: "mb")
        urcu_mb_unregister_thread()
    }
}
