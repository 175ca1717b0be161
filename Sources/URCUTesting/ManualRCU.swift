import Synchronization
import URCU

/// A flavor whose grace periods end when the test says so.
///
/// Read sections are counted but never waited for; callbacks queue up until
/// ``completeGracePeriod()`` runs them. Code generic over its flavor (such as
/// `PercpuRef`) can then be driven step by step: start a mode switch, check
/// the state while it is in flight, complete it.
///
/// `Domain` is any type, used only as a name: each domain has its own
/// callbacks and grace periods, so tests that run in parallel do not end
/// each other's grace periods. Use one domain per suite, and drive it from
/// one thread.
public enum ManualRCU<Domain>: RCUFlavor {
    public static var name: String { "manual(\(Domain.self))" }

    public static var accounting: GracePeriodAccounting { state.accounting }

    public static func _readLock() { state.readers.wrappingAdd(1, ordering: .relaxed) }
    public static func _readUnlock() { state.readers.wrappingSubtract(1, ordering: .relaxed) }
    public static var isInReadSection: Bool { state.readers.load(ordering: .relaxed) > 0 }

    /// A grace period here is one ``completeGracePeriod()``.
    public static func _synchronize() { completeGracePeriod() }

    public static func call(_ callback: @escaping @Sendable () -> Void) {
        state.accounting.callbackQueued()
        state.queue.withLock { $0.append(callback) }
    }

    public static func barrier() {
        while queuedCallbacks > 0 { completeGracePeriod() }
    }

    /// The number of callbacks waiting for a grace period.
    public static var queuedCallbacks: Int { state.queue.withLock { $0.count } }

    /// Ends a grace period: runs the callbacks queued before this call (not
    /// those they queue themselves) and returns how many ran.
    @discardableResult
    public static func completeGracePeriod() -> Int {
        if isInReadSection {
            rcuMisuse("\(name): completeGracePeriod() inside a read section")
        }
        let due = state.queue.withLock { queue -> [@Sendable () -> Void] in
            defer { queue.removeAll() }
            return queue
        }
        for callback in due {
            callback()
            state.accounting.callbackRan()
        }
        return due.count
    }

    private static var state: ManualDomainState { ManualDomainState.of(ObjectIdentifier(Domain.self)) }
}

/// One domain's queue, readers and accounting. Generic types cannot have
/// stored static properties, so the domains live in one table.
final class ManualDomainState: Sendable {
    let accounting = GracePeriodAccounting()
    let readers = Atomic<Int>(0)
    let queue = Mutex<[@Sendable () -> Void]>([])

    private static let domains = Mutex<[ObjectIdentifier: ManualDomainState]>([:])

    static func of(_ domain: ObjectIdentifier) -> ManualDomainState {
        domains.withLock { domains in
            if let state = domains[domain] { return state }
            let state = ManualDomainState()
            domains[domain] = state
            return state
        }
    }
}
