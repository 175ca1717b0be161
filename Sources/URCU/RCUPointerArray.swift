/// A fixed number of RCU-protected references in one shareable object: a
/// table of slots readers look up by index (the kernel's arrays of `__rcu`
/// pointers, such as fs/aio's `kioctx_table`).
///
/// ``RCUPointer`` is `~Copyable`, because it owns its value: it cannot go
/// into an `Array` or be captured by a task. This class holds `count` of
/// them and is an ordinary reference: store it, share it, capture it.
/// Each element is an ``RCUPointer`` with the whole accessor set:
///
/// ```swift
/// let slots = RCUPointerArray<Connection, MembarrierRCU>(count: 64)
/// slots[3].assign(Connection())                      // publish
/// let found = MembarrierRCU.read { section in        // look up
///     slots[3].dereference(in: section) { $0?.id }
/// }
/// slots[3].assign(nil)                                // unpublish; retired after a grace period
/// ```
///
/// An index outside `0..<count` is a misuse, diagnosed in every build.
/// Updaters of one element are serialised by the caller, as for
/// ``RCUPointer``. When the array itself is destroyed, the values it still
/// holds are released at once: nothing can be reading an array no one
/// holds.
public final class RCUPointerArray<Value: AnyObject & Sendable, Flavor: RCUFlavor>: @unchecked Sendable {
    // @unchecked: the elements are Sendable and never move; the buffer is
    // written only by init and deinit.
    @usableFromInline let elements: UnsafeMutablePointer<RCUPointer<Value, Flavor>>

    /// The number of elements.
    public let count: Int

    /// Creates `count` elements, each holding nil.
    public init(count: Int) {
        if count < 0 { rcuMisuse("RCUPointerArray: count \(count) is negative") }
        self.count = count
        elements = .allocate(capacity: count)
        for index in 0..<count { (elements + index).initialize(to: RCUPointer()) }
    }

    deinit {
        elements.deinitialize(count: count)
        elements.deallocate()
    }

    /// The element at `index`, lent for the duration of the access.
    @inlinable
    public subscript(index: Int) -> RCUPointer<Value, Flavor> {
        _read {
            if _slowPath(index < 0 || index >= count) { indexOutOfRange(index) }
            yield elements[index]
        }
    }

    @usableFromInline
    func indexOutOfRange(_ index: Int) -> Never {
        rcuMisuse("RCUPointerArray: index \(index) is out of range 0..<\(count)")
    }
}
