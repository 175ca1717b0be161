import Synchronization
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// A published object that detects use after free and half-initialised
/// reads.
///
/// `check` holds `2 * value + 1` once initialised; `deinit` poisons both
/// fields and records the free in `freedIDs`, so a reader that reaches a
/// retired object too late sees the poison (while the memory is not yet
/// reused) or finds its id in the freed set.
final class Canary: @unchecked Sendable {
    static let poison = 0x5EAD_DEAD_BEEF
    static let registry = Lock<Set<Int>>([])
    static let nextID = Atomic<Int>(0)

    let id: Int
    var value: Int
    var check: Int

    init(_ value: Int) {
        id = Canary.nextID.wrappingAdd(1, ordering: .relaxed).newValue
        self.value = value
        self.check = 2 * value + 1
    }

    /// Whether the fields are fully initialised and not poisoned. Cheap
    /// enough for stress loops; ``isFreed(_:)`` is the exact check.
    var isIntact: Bool {
        value != Canary.poison && check == 2 * value + 1
    }

    static func isFreed(_ id: Int) -> Bool { registry.withLock { $0.contains(id) } }

    deinit {
        value = Canary.poison
        check = Canary.poison
        Canary.registry.withLock { _ = $0.insert(id) }
    }
}
