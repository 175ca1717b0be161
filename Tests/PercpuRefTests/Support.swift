import Synchronization

/// A shared counter for closures (release, confirm) to bump and tests to read.
final class Counter: Sendable {
    private let storage = Atomic<Int>(0)
    func increment(by amount: Int = 1) { storage.wrappingAdd(amount, ordering: .relaxed) }
    var value: Int { storage.load(ordering: .acquiring) }
}

/// A shared flag, set once.
final class Flag: Sendable {
    private let storage = Atomic<Bool>(false)
    func set() { storage.store(true, ordering: .releasing) }
    var isSet: Bool { storage.load(ordering: .acquiring) }
}
