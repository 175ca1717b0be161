import Synchronization

/// A read-mostly value behind RCU: reads cost a read section and a load,
/// updates copy the value, modify the copy, publish it and retire the old
/// copy after a grace period.
///
/// Typical use is configuration that many threads read on every request and
/// that changes rarely:
///
/// ```swift
/// let limits = RCUBox<Limits, MembarrierRCU>(Limits(maxConnections: 100))
/// let max = limits.read { $0.maxConnections }       // any thread, no lock
/// limits.update { $0.maxConnections = 200 }         // writers serialised
/// ```
///
/// Readers see either the old value or the new one, never a mixture.
public final class RCUBox<Value: Sendable, Flavor: RCUFlavor>: Sendable {
    @usableFromInline
    final class Snapshot: Sendable {
        @usableFromInline
        let value: Value

        init(_ value: Value) { self.value = value }
    }

    @usableFromInline
    let current: RCUPointer<Snapshot, Flavor>
    private let writer = Lock(())

    /// Creates a box holding `value`.
    public init(_ value: Value) {
        current = RCUPointer(Snapshot(value))
    }

    /// Lends the current value to `body` inside a read section of its own.
    @inlinable
    public func read<Result, Failure: Error>(
        _ body: (borrowing Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try Flavor.read { (section) throws(Failure) -> Result in try read(in: section, body) }
    }

    /// Lends the current value to `body` inside the caller's read section.
    @inlinable
    public func read<Result, Failure: Error>(
        in section: borrowing ReadSection<Flavor>,
        _ body: (borrowing Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // The box always holds a snapshot: init stores one and update only
        // replaces it with another.
        try current.dereference(in: section) { (snapshot) throws(Failure) -> Result in try body(snapshot.unsafelyUnwrapped.value) }
    }

    /// A copy of the current value.
    public var value: Value { read { $0 } }

    /// Applies `body` to a copy of the value and publishes the copy.
    ///
    /// Updates are serialised; readers are never blocked. If `body` throws,
    /// nothing is published. The old copy is released after a grace period.
    @discardableResult
    public func update<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        try writer.withLock { (_) throws(Failure) -> Result in
            var copy = current.dereferenceProtected(by: true).unsafelyUnwrapped.value
            let result = try body(&copy)
            current.assign(Snapshot(copy))
            return result
        }
    }
}
