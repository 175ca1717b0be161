import Synchronization

/// An object read from an ``RCUPointer``, valid for the read section it was
/// read in and no longer: the type is `~Escapable`, its lifetime bound to
/// the section's ``ReadSection`` token, so the compiler refuses to let it
/// leave the section (return it from `read`, store it, capture it).
///
/// In exchange it costs nothing: reading one and using ``object`` does no
/// retain and no release, so a traversal that follows RCU-protected links
/// touches no object's reference count (the shared cache line RCU exists
/// to spare), as `rcu_dereference` in C:
///
/// ```swift
/// final class Node: Sendable {
///     let value: Int
///     let next: RCUPointer<Node, MembarrierRCU>
///     init(value: Int, next: Node?) { self.value = value; self.next = RCUPointer(next) }
/// }
/// let list = RCUPointer<Node, MembarrierRCU>(Node(value: 1, next: Node(value: 2, next: nil)))
/// let sum = MembarrierRCU.read { section in
///     var sum = 0
///     var node = list.dereference(in: section)
///     while let current = node {
///         sum += current.object.value
///         node = current.object.next.dereference(in: section)
///     }
///     return sum
/// }
/// ```
///
/// To keep an object beyond its section, copy what you need, or take a
/// strong reference (`let kept = reference.object`, which retains it while
/// the section still protects it).
public struct RCUReference<Value: AnyObject & Sendable>: ~Escapable {
    @usableFromInline let unmanaged: Unmanaged<Value>

    // Immortal here; ``RCUPointer/dereference(in:)`` narrows the lifetime
    // to its section's.
    @inlinable
    @_lifetime(immortal)
    init(_ unmanaged: Unmanaged<Value>) { self.unmanaged = unmanaged }

    /// The object, lent for the access without a retain.
    @inlinable
    public var object: Value {
        // The bit cast yields the object at +0: the section keeps it alive,
        // so nothing is retained for the borrow (unlike
        // takeUnretainedValue(), which returns an owned reference).
        _read { yield unsafeBitCast(unmanaged, to: Value.self) }
    }
}

extension RCUPointer {
    /// Reads the current value inside a read section (`rcu_dereference`),
    /// as a reference that cannot leave the section and costs no retain.
    ///
    /// The closure form ``dereference(in:_:)`` lends the value to a
    /// closure; this form returns it, for code that follows links from one
    /// object to the next within one section.
    @inlinable
    @inline(__always)
    @_lifetime(borrow section)
    public func dereference(in section: borrowing ReadSection<Flavor>) -> RCUReference<Value>? {
        // Acquire: as in dereference(in:_:).
        guard let unmanaged = storage.load(ordering: .acquiring) else { return nil }
        return _overrideLifetime(RCUReference(unmanaged), borrowing: section)
    }
}
