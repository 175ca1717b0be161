import Synchronization
import URCU

/// A flavor whose grace periods end when the test says so.
///
/// Read sections are counted but never waited for; callbacks queue up until
/// ``completeGracePeriod()`` runs them. Code generic over its flavor (such as
/// `PercpuRef`) can then be driven step by step: start a mode switch, check
/// the state while it is in flight, complete it.
///
/// The state is process-wide, so tests that use this flavor must not run in
/// parallel with each other (`.serialized`), and must use it from one thread.
public enum ManualRCU: RCUFlavor {
    public static let name = "manual"
    public static let accounting = GracePeriodAccounting()

    private static let readers = Atomic<Int>(0)
    private static let queue = Mutex<[@Sendable () -> Void]>([])

    public static func _readLock() { readers.wrappingAdd(1, ordering: .relaxed) }
    public static func _readUnlock() { readers.wrappingSubtract(1, ordering: .relaxed) }
    public static var isInReadSection: Bool { readers.load(ordering: .relaxed) > 0 }

    /// A grace period here is one ``completeGracePeriod()``.
    public static func _synchronize() { completeGracePeriod() }

    public static func call(_ callback: @escaping @Sendable () -> Void) {
        accounting.callbackQueued()
        queue.withLock { $0.append(callback) }
    }

    public static func barrier() {
        while queuedCallbacks > 0 { completeGracePeriod() }
    }

    /// The number of callbacks waiting for a grace period.
    public static var queuedCallbacks: Int { queue.withLock { $0.count } }

    /// Ends a grace period: runs the callbacks queued before this call (not
    /// those they queue themselves) and returns how many ran.
    @discardableResult
    public static func completeGracePeriod() -> Int {
        if isInReadSection {
            rcuMisuse("manual: completeGracePeriod() inside a read section")
        }
        let due = queue.withLock { queue -> [@Sendable () -> Void] in
            defer { queue.removeAll() }
            return queue
        }
        for callback in due {
            callback()
            accounting.callbackRan()
        }
        return due.count
    }
}
