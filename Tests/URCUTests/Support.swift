import Synchronization
import Testing
import URCU

#if canImport(Glibc)
import Glibc
#endif

/// Every flavor the library ships, for parameterised tests.
let allFlavors: [any LiburcuFlavor.Type] = [
    MembarrierRCU.self, QuiescentStateRCU.self, MemoryBarrierRCU.self, BulletproofRCU.self,
]

extension RCUFlavor {
    /// Runs `body` as a reader thread of this flavor: QSBR threads must
    /// register themselves, the others register on their own.
    static func asReaderThread<Result>(_ body: () -> Result) -> Result {
        guard Self.self == QuiescentStateRCU.self else { return body() }
        QuiescentStateRCU.registerThread()
        defer { QuiescentStateRCU.unregisterThread() }
        return body()
    }

    /// What a reader loop does between sections: QSBR readers report a
    /// quiescent state, the others need nothing.
    static func betweenSections() {
        if Self.self == QuiescentStateRCU.self { QuiescentStateRCU.quiescentState() }
    }
}

/// A joinable OS thread running a closure (not a task: read sections need
/// threads that the test controls).
final class TestThread: @unchecked Sendable {
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let status = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            box.body()
            return nil
        }, box)
        precondition(status == 0)
    }

    func join() { pthread_join(thread, nil) }

    private final class Box {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
}

/// Runs `count` threads to completion.
func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let threads = (0..<count).map { index in TestThread { body(index) } }
    threads.forEach { $0.join() }
}

/// A one-shot signal between threads.
final class Latch: Sendable {
    private let state = Atomic<Bool>(false)
    func open() { state.store(true, ordering: .releasing) }
    var isOpen: Bool { state.load(ordering: .acquiring) }

    /// Spins (with short sleeps) until open or until `seconds` pass. The
    /// bound only keeps a broken test from hanging: on a loaded 2-core
    /// machine, steps of a correct test can take seconds.
    @discardableResult
    func wait(seconds: Double = 120) -> Bool {
        let deadline = monotonicSeconds() + seconds
        while !isOpen {
            if monotonicSeconds() > deadline { return false }
            usleep(100)
        }
        return true
    }
}

func monotonicSeconds() -> Double {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
}

/// Polls `condition` until it holds or `seconds` pass.
func eventually(seconds: Double = 120, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicSeconds() + seconds
    while !condition() {
        if monotonicSeconds() > deadline { return false }
        usleep(200)
    }
    return true
}

/// A published object that detects use after free and half-initialised
/// reads.
///
/// `check` holds `2 * value + 1` once initialised; `deinit` poisons both
/// fields and records the free in `freedIDs`, so a reader that reaches a
/// retired object too late sees the poison (while the memory is not yet
/// reused) or finds its id in the freed set.
final class Canary: @unchecked Sendable {
    static let poison = 0x5EAD_DEAD_BEEF
    static let registry = Mutex<Set<Int>>([])
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

/// Runs blocking `body` on its own thread and awaits it, so a test that
/// blocks for long does not hold one of the few cooperative-pool threads
/// that tasks queued by the code under test need in order to run.
func offPool<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
    await withCheckedContinuation { continuation in
        _ = TestThread { continuation.resume(returning: body()) }
    }
}
