import CURCU
import Synchronization
import URCU

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A joinable OS thread running a closure.
///
/// RCU tests need threads they control, not tasks: read sections, QSBR
/// registration and per-thread counters belong to a thread, and a task can
/// move between threads at every `await`.
public final class JoinableThread: @unchecked Sendable {
    private var thread = pthread_t()

    /// Starts a thread running `body`.
    ///
    /// - Parameter name: the thread's name (at most 15 bytes), as
    ///   debuggers and stall reports show it.
    /// - Parameter body: what the thread runs; it ends when `body` returns.
    public init(name: String? = nil, _ body: @escaping @Sendable () -> Void) {
        final class Box {
            let name: String?
            let body: @Sendable () -> Void
            init(_ name: String?, _ body: @escaping @Sendable () -> Void) {
                self.name = name
                self.body = body
            }
        }
        let box = Unmanaged.passRetained(Box(name, body)).toOpaque()
        let status = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            // Named before the body runs: threads it creates inherit the
            // name (liburcu's workers do).
            if let name = box.name { pthread_setname_np(pthread_self(), name) }
            box.body()
            return nil
        }, box)
        precondition(status == 0, "pthread_create failed: \(status)")
    }

    private var joined = false

    /// Waits for the thread to finish.
    public func join() {
        pthread_join(thread, nil)
        joined = true
    }

    /// A thread nobody joins is detached, so that its resources go when it
    /// ends.
    deinit {
        if !joined { pthread_detach(thread) }
    }
}

/// A one-shot signal between threads.
public final class Latch: Sendable {
    private let state = Atomic<Bool>(false)

    /// A closed latch.
    public init() {}

    /// Opens the latch; it stays open.
    public func open() { state.store(true, ordering: .releasing) }
    /// Whether ``open()`` has been called.
    public var isOpen: Bool { state.load(ordering: .acquiring) }

    /// Waits (sleeping briefly between checks) until open or until `seconds`
    /// pass; returns whether it opened. The bound only keeps a broken test
    /// from hanging: on a loaded machine a correct step can take seconds.
    @discardableResult
    public func wait(seconds: Double = 120) -> Bool {
        eventually(seconds: seconds) { isOpen }
    }
}

/// A counter shared between threads and closures.
public final class Counter: Sendable {
    private let storage = Atomic<Int>(0)

    /// A counter at zero.
    public init() {}

    /// Adds one.
    public func increment() { storage.wrappingAdd(1, ordering: .relaxed) }
    /// The count.
    public var value: Int { storage.load(ordering: .acquiring) }
}

/// Polls `condition` until it holds or `seconds` pass; returns whether it
/// held.
public func eventually(seconds: Double = 120, _ condition: () -> Bool) -> Bool {
    let deadline = monotonicSeconds() + seconds
    while !condition() {
        if monotonicSeconds() > deadline { return false }
        usleep(200)
    }
    return true
}


/// A small deterministic random generator (splitmix64): a seed names a
/// run, so a failing one can be replayed.
public struct SplitMix: RandomNumberGenerator {
    private var state: UInt64

    /// A generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// The calling thread's name (`pthread_getname_np`).
public func currentThreadName() -> String {
    var buffer = [CChar](repeating: 0, count: 16)
    pthread_getname_np(pthread_self(), &buffer, buffer.count)
    return buffer.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
}

/// The threads of this process named `name` (their `comm` in
/// `/proc/self/task`). A thread that has returned leaves the list even if
/// nobody joins it: that is how a test sees that a worker thread is gone.
public func threadCount(named name: String) -> Int {
    guard let directory = opendir("/proc/self/task") else { return 0 }
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        let task = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard task.first?.isNumber == true else { continue }
        let file = open("/proc/self/task/\(task)/comm", O_RDONLY)
        // The thread may have exited since the directory was read.
        guard file >= 0 else { continue }
        var buffer = [UInt8](repeating: 0, count: 32)
        let length = read(file, &buffer, buffer.count)
        close(file)
        guard length > 0 else { continue }
        // comm ends with a newline.
        if String(decoding: buffer[..<length].prefix { $0 != 10 }, as: UTF8.self) == name { count += 1 }
    }
    return count
}
