/// A value alone on its cache line(s): the stride of this struct keeps any
/// neighbour at least 64 bytes away from `value`, so threads writing
/// different padded values never share a line (no false sharing).
@frozen @usableFromInline
package struct CacheLinePadded<Value: ~Copyable>: ~Copyable {
    @usableFromInline package var value: Value
    // 128 bytes of padding: `value` is at most a few words, and two values
    // 128 bytes apart cannot share a 64-byte line, nor an adjacent-line
    // prefetch pair.
    @usableFromInline
    var padding: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                  UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)

    @inlinable
    package init(_ value: consuming Value) {
        self.value = value
    }
}

extension CacheLinePadded: Sendable where Value: Sendable & ~Copyable {}
