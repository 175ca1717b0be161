import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A dedicated callback thread of a liburcu flavor (liburcu's
/// `call_rcu_data`).
///
/// By default every callback of a flavor runs on one shared thread. A
/// program whose updaters queue many callbacks can give a thread its own
/// worker with ``LiburcuFlavor/withCallbackWorker(_:_:)`` or give every CPU one
/// with ``LiburcuFlavor/createPerCPUCallbackWorkers(realtime:)``.
// @unchecked: call_rcu_data pointers are not Sendable in Swift, but liburcu
// makes them safe to use from any thread.
public final class CallbackWorker<Flavor: LiburcuFlavor>: @unchecked Sendable {
    private let data: Atomic<OpaquePointer?>
    private let activeScopes = Atomic<Int>(0)

    /// Starts a callback thread.
    ///
    /// - Parameters:
    ///   - realtime: poll for callbacks instead of sleeping on a futex
    ///     (`URCU_CALL_RCU_RT`): lower latency, one busy core.
    ///   - cpu: pin the thread to this CPU.
    public init(realtime: Bool = false, cpu: Int32? = nil) {
        let flags = realtime ? UInt(URCU_CALL_RCU_RT) : 0
        data = Atomic(Flavor.liburcu.create_call_rcu_data(flags, cpu ?? -1))
    }

    /// The worker's thread.
    public var thread: pthread_t {
        guard let data = data.load(ordering: .acquiring) else {
            rcuMisuse("\(Flavor.name): CallbackWorker used after shutdown()")
        }
        return Flavor.liburcu.get_call_rcu_thread(data)
    }

    /// Marks a scope as using the worker. Paired with `shutdown()` as in
    /// Dekker's algorithm: each side writes its own flag, then reads the
    /// other's (sequentially consistent), so at least one sees the other.
    func enter() -> OpaquePointer {
        activeScopes.wrappingAdd(1, ordering: .sequentiallyConsistent)
        guard let data = data.load(ordering: .sequentiallyConsistent) else {
            rcuMisuse("\(Flavor.name): CallbackWorker used after shutdown()")
        }
        return data
    }

    func leave() {
        activeScopes.wrappingSubtract(1, ordering: .releasing)
    }

    /// Stops the thread. Callbacks still queued on it move to the flavor's
    /// default worker, so none is lost.
    ///
    /// The worker must not be in use by any ``LiburcuFlavor/withCallbackWorker(_:_:)``
    /// scope. Waits for a grace period first, as liburcu requires between
    /// the last use of a worker and its release.
    public func shutdown() {
        guard let old = data.exchange(nil, ordering: .sequentiallyConsistent) else {
            rcuMisuse("\(Flavor.name): CallbackWorker.shutdown() called twice")
        }
        if activeScopes.load(ordering: .sequentiallyConsistent) != 0 {
            rcuMisuse("\(Flavor.name): CallbackWorker.shutdown() while a withCallbackWorker scope still uses it")
        }
        Flavor.synchronize()
        Flavor.liburcu.call_rcu_data_free(old)
    }
}

extension LiburcuFlavor {
    /// Runs `body` with `worker` receiving the callbacks the calling thread
    /// queues (`set_thread_call_rcu_data`), then restores the previous
    /// setting.
    public static func withCallbackWorker<Result>(
        _ worker: CallbackWorker<Self>, _ body: () throws -> Result
    ) rethrows -> Result {
        let previous = liburcu.get_thread_call_rcu_data()
        liburcu.set_thread_call_rcu_data(worker.enter())
        defer {
            liburcu.set_thread_call_rcu_data(previous)
            worker.leave()
        }
        return try body()
    }

    /// Gives every CPU its own callback thread
    /// (`create_all_cpu_call_rcu_data`); a callback then runs on the worker
    /// of the CPU that queued it.
    ///
    /// - Returns: false if the system cannot provide per-CPU workers (then
    ///   callbacks keep using the default worker).
    @discardableResult
    public static func createPerCPUCallbackWorkers(realtime: Bool = false) -> Bool {
        liburcu.create_all_cpu_call_rcu_data(realtime ? UInt(URCU_CALL_RCU_RT) : 0) == 0
    }

    /// Stops the per-CPU callback threads; their queued callbacks move to
    /// the default worker (`free_all_cpu_call_rcu_data`).
    public static func removePerCPUCallbackWorkers() {
        liburcu.free_all_cpu_call_rcu_data()
    }

    /// Whether the CPU has its own callback thread.
    public static func hasCallbackWorker(forCPU cpu: Int32) -> Bool {
        liburcu.get_cpu_call_rcu_data(cpu) != nil
    }
}
