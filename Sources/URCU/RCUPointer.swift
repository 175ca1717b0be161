import Synchronization

/// An RCU-protected reference to a Swift object (the kernel's `__rcu`
/// pointer), readable inside read sections of `Flavor` only.
///
/// Ownership: the pointer owns one strong reference to its current value.
/// Replacing the value (``assign(_:)``, ``exchange(_:)``,
/// ``compareExchange(expected:desired:)``, ``initialize(to:)``) retires the
/// old reference after a grace period of `Flavor`, so readers that found the
/// old value may keep using it until their section ends, without retaining
/// it. Reading never touches the object's reference count.
///
/// Updaters must be serialised by the caller (a lock, a single updater
/// thread), as with the kernel's accessors; readers need nothing but a
/// ``ReadSection`` of the same flavor.
public struct RCUPointer<Value: AnyObject & Sendable, Flavor: RCUFlavor>: ~Copyable, Sendable {
    @usableFromInline
    let storage: Atomic<Unmanaged<Value>?>

    /// Creates a pointer holding `value`. Nothing can read it yet, so no
    /// ordering is needed.
    @inlinable
    public init(_ value: Value? = nil) {
        storage = Atomic(value.map { Unmanaged.passRetained($0) })
    }

    deinit {
        // Every reader borrows the pointer for as long as it uses the value,
        // so none can be left once the pointer itself is destroyed.
        storage.load(ordering: .relaxed)?.release()
    }

    /// Reads the current value inside a read section (`rcu_dereference`)
    /// and lends it to `body`.
    ///
    /// The value is valid for the whole of `body` without being retained.
    /// If `body` stores or returns it, Swift retains it while the section
    /// still protects it, which is safe: the object then lives as long as
    /// that reference.
    @inlinable
    @inline(__always)
    public func dereference<Result, Failure: Error>(
        in section: borrowing ReadSection<Flavor>,
        _ body: (Value?) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        // Acquire stands in for C's consume ordering (what rcu_dereference
        // provides through the address dependency); it is a plain load on
        // x86-64.
        guard let unmanaged = storage.load(ordering: .acquiring) else { return try body(nil) }
        // _withUnsafeGuaranteedRef lends the object without a retain; it only
        // rethrows untyped errors, so the typed error crosses it as a value.
        let outcome = unmanaged._withUnsafeGuaranteedRef { (value) -> Swift.Result<Result, Failure> in
            do throws(Failure) { return .success(try body(value)) } catch { return .failure(error) }
        }
        return try outcome.get()
    }

    /// The identity of the current value, for comparison or a nil test only
    /// (`rcu_access_pointer`): the object may be retired at any moment, so
    /// this never hands out a reference.
    @inlinable
    public func access() -> ObjectIdentifier? {
        // Built from the raw pointer: forming a reference, even briefly,
        // could retain an object that a grace period has already freed.
        storage.load(ordering: .relaxed).map { unsafeBitCast($0.toOpaque(), to: ObjectIdentifier.self) }
    }

    /// Reads the current value on the update side, where the caller's own
    /// lock keeps it from being replaced (`rcu_dereference_protected`).
    ///
    /// - Parameter lockHeld: states the lock that serialises updaters, as
    ///   the kernel's lockdep expression does; checked in every build.
    /// - Parameter file: the caller's file, named in the diagnostic.
    /// - Parameter line: the caller's line, named in the diagnostic.
    public func dereferenceProtected(
        by lockHeld: @autoclosure () -> Bool, file: StaticString = #fileID, line: UInt = #line
    ) -> Value? {
        if !lockHeld() {
            rcuMisuse("dereferenceProtected without the update-side lock", file: file, line: line)
        }
        return storage.load(ordering: .relaxed)?.takeUnretainedValue()
    }

    /// Publishes `newValue` (`rcu_assign_pointer`): readers that see it also
    /// see everything written to it before this call. The old value is
    /// retired after a grace period.
    @inlinable
    public func assign(_ newValue: Value?) {
        retire(storage.exchange(newValue.map { Unmanaged.passRetained($0) }, ordering: .releasing))
    }

    /// Stores `newValue` with no ordering (`RCU_INIT_POINTER`), for nil or
    /// for a value readers cannot reach yet (the pointer's container is not
    /// yet published). The old value is retired after a grace period.
    @inlinable
    public func initialize(to newValue: Value?) {
        retire(storage.exchange(newValue.map { Unmanaged.passRetained($0) }, ordering: .relaxed))
    }

    /// Publishes `newValue` and returns the value it replaced
    /// (`rcu_xchg_pointer`).
    ///
    /// Readers may still be using the old value; its retirement is queued
    /// all the same, so the returned reference is the caller's to keep or
    /// drop at any time.
    @inlinable
    public func exchange(_ newValue: Value?) -> Value? {
        let old = storage.exchange(newValue.map { Unmanaged.passRetained($0) }, ordering: .acquiringAndReleasing)
        let result = old?.takeUnretainedValue()
        retire(old)
        return result
    }

    /// Publishes `desired` if the current value is `expected`, compared by
    /// identity (`rcu_cmpxchg_pointer`). On success the old value is
    /// retired after a grace period.
    ///
    /// - Returns: whether the exchange happened.
    @inlinable
    @discardableResult
    public func compareExchange(expected: Value?, desired: Value?) -> Bool {
        let expectedPointer = expected.map { Unmanaged.passUnretained($0) }
        let desiredPointer = desired.map { Unmanaged.passRetained($0) }
        let (exchanged, _) = storage.compareExchange(
            expected: expectedPointer, desired: desiredPointer, ordering: .acquiringAndReleasing)
        if exchanged {
            retire(expectedPointer)
        } else {
            desiredPointer?.release()
        }
        return exchanged
    }

    @usableFromInline
    func retire(_ old: Unmanaged<Value>?) {
        guard let old else { return }
        Flavor.retire(Unmanaged<AnyObject>.passUnretained(old.takeUnretainedValue()))
    }
}
