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
///
/// End a worker with ``shutdown()-2ecnx``; a worker dropped without it is shut
/// down when its last reference goes (see `deinit`).
///
/// After ``forkProcess()``, the child has none of the parent's workers:
/// liburcu frees them at the fork and moves their queued callbacks to the
/// child's new default worker. Using one of them in the child is a misuse;
/// shutting it down or dropping it there does nothing.
// @unchecked: call_rcu_data pointers are not Sendable in Swift, but liburcu
// makes them safe to use from any thread.
public final class CallbackWorker<Flavor: LiburcuFlavor>: @unchecked Sendable {
    private let data: Atomic<OpaquePointer?>
    private let activeScopes = Atomic<Int>(0)
    /// The fork generation (`ForkGuard.generation`) the worker was created in; in a later one (a
    /// child process), liburcu has freed `data`.
    private let generation: Int

    /// The worker's thread, as it was started. Once ``shutdown()-2ecnx`` has
    /// returned, the thread has ended and a new thread may reuse the value;
    /// in a child of ``forkProcess()``, the thread does not exist.
    public let thread: pthread_t

    /// Starts a callback thread, and the flavor's default callback thread
    /// if it is not running yet (``shutdown()-2ecnx`` moves queued callbacks
    /// there).
    ///
    /// - Parameters:
    ///   - realtime: poll for callbacks instead of sleeping on a futex
    ///     (`URCU_CALL_RCU_RT`): lower latency, one busy core.
    ///   - cpu: pin the thread to this CPU.
    /// - Throws: ``CallbackThreadUnavailable`` when the system would not
    ///   start a thread (a thread limit such as `ulimit -u`, or no memory
    ///   for its stack). liburcu itself would stop the process.
    public init(realtime: Bool = false, cpu: Int32? = nil) throws(CallbackThreadUnavailable) {
        try Flavor.startDefaultCallbackThread()
        try reserveThreads(1)
        let flags = realtime ? UInt(URCU_CALL_RCU_RT) : 0
        // Never nil: liburcu stops the process rather than return nil.
        let data = Flavor._liburcu.create_call_rcu_data(flags, cpu ?? -1)!
        self.data = Atomic(data)
        thread = Flavor._liburcu.get_call_rcu_thread(data)
        generation = ForkGuard.generation
    }

    /// Whether liburcu freed the worker at a ``forkProcess()`` since it was
    /// created.
    private var isFromBeforeFork: Bool { generation != ForkGuard.generation }

    /// Marks a scope as using the worker. Paired with `shutdown()` as in
    /// Dekker's algorithm: each side writes its own flag, then reads the
    /// other's (sequentially consistent), so at least one sees the other.
    func enter() -> OpaquePointer {
        if isFromBeforeFork {
            rcuMisuse(
                "\(Flavor.name): CallbackWorker used in a child process of forkProcess(); liburcu stopped the parent's workers at the fork (create a new one in the child)")
        }
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
    /// scope, and the call must not come from a callback running on the
    /// worker (it would wait for its own thread to end). Waits for a grace
    /// period first, as liburcu requires between the last use of a worker
    /// and its release, then for the thread to end: blocks the calling
    /// thread (an online QSBR caller goes offline meanwhile), so async code
    /// uses `await shutdown()`.
    @available(*, noasync, message: "blocks the thread; use 'await shutdown()' in async code")
    public func shutdown() {
        guard let old = takeForShutdown() else { return }
        Self.stop(old, thread: thread)
    }

    /// ``shutdown()`` for async code: the task suspends while a thread of
    /// its own waits.
    public func shutdown() async {
        guard let old = takeForShutdown() else { return }
        nonisolated(unsafe) let data = old
        let thread = thread
        await onThreadOfItsOwn { Self.stop(data, thread: thread) }
    }

    /// Checks that the worker may be shut down from here and takes its
    /// `call_rcu_data`; `nil` when liburcu freed it at a fork already.
    private func takeForShutdown() -> OpaquePointer? {
        guard let old = data.exchange(nil, ordering: .sequentiallyConsistent) else {
            rcuMisuse("\(Flavor.name): CallbackWorker.shutdown() called twice")
        }
        // Freed by liburcu already; scopes of threads that no longer exist
        // may still be counted.
        if isFromBeforeFork { return nil }
        if pthread_equal(pthread_self(), thread) != 0 {
            rcuMisuse(
                "\(Flavor.name): CallbackWorker.shutdown() called from a callback running on that worker; it would wait for its own thread to stop")
        }
        if activeScopes.load(ordering: .sequentiallyConsistent) != 0 {
            rcuMisuse("\(Flavor.name): CallbackWorker.shutdown() while a withCallbackWorker scope still uses it")
        }
        return old
    }

    /// Shuts down a worker nobody shut down. Where the thread dropping the
    /// last reference may not wait (inside a read section, or on a callback
    /// thread: the worker's own, when its last reference is captured by one
    /// of its callbacks), a thread of its own does it.
    deinit {
        guard let data = data.load(ordering: .relaxed), !isFromBeforeFork else { return }
        let thread = thread
        if Flavor.mayWaitForCallbacks {
            Self.stop(data, thread: thread)
            return
        }
        let status = startDetachedThread { Self.stop(data, thread: thread) }
        if status != 0 {
            writeStandardError(
                "swift-urcu: a \(Flavor.name) CallbackWorker dropped where it cannot be shut down (inside a read section "
                    + "or on a callback thread) keeps its thread: no thread could be started to shut it down ("
                    + String(cString: strerror(status)) + ")\n")
        }
    }

    /// Frees the worker and ends its thread: the one path of `shutdown()`
    /// and `deinit`.
    private static func stop(_ data: OpaquePointer, thread: pthread_t) {
        whileBlocked {
            // The grace period liburcu requires before the free; then
            // call_rcu_data_free polls until the worker's thread has
            // stopped (its last grace period may wait for this thread), and
            // the join waits until it has ended.
            Flavor.synchronize()
            Flavor._liburcu.call_rcu_data_free(data)
            joinStoppedWorker(thread)
        }
    }
}

/// The system would not start a callback thread: `pthread_create` failed.
public struct CallbackThreadUnavailable: Error, CustomStringConvertible {
    /// `pthread_create`'s error number: `EAGAIN` under a thread limit
    /// (`ulimit -u`, `RLIMIT_NPROC`, the kernel's `threads-max`) or without
    /// memory for the thread's stack.
    public let code: Int32

    public var description: String {
        "cannot start a callback thread: pthread_create failed: \(String(cString: strerror(code)))"
    }
}

extension LiburcuFlavor {
    /// Runs `body` with `worker` receiving the callbacks the calling thread
    /// queues (`set_thread_call_rcu_data`), then restores the previous
    /// setting.
    public static func withCallbackWorker<Result>(
        _ worker: CallbackWorker<Self>, _ body: () throws -> Result
    ) rethrows -> Result {
        let previous = _liburcu.get_thread_call_rcu_data()
        let generation = ForkGuard.generation
        _liburcu.set_thread_call_rcu_data(worker.enter())
        defer {
            // After a forkProcess() in `body`, this is the child's thread:
            // liburcu pointed it at the new default worker and freed the
            // worker `previous` may name. It stays on the default one.
            if ForkGuard.generation == generation {
                _liburcu.set_thread_call_rcu_data(previous)
            }
            worker.leave()
        }
        return try body()
    }

    /// Gives every CPU its own callback thread
    /// (`create_all_cpu_call_rcu_data`); a callback then runs on the worker
    /// of the CPU that queued it.
    ///
    /// - Returns: false if the system cannot provide per-CPU workers (then
    ///   callbacks keep using the default worker), including when it would
    ///   not start their threads.
    @discardableResult
    public static func createPerCPUCallbackWorkers(realtime: Bool = false) -> Bool {
        perCPUWorkersLock.withLock { _ in
            let missing = (0..<possibleCPUCount).count { _liburcu.get_cpu_call_rcu_data($0) == nil }
            do {
                try startDefaultCallbackThread()
                try reserveThreads(missing)
            } catch {
                return false
            }
            return _liburcu.create_all_cpu_call_rcu_data(realtime ? UInt(URCU_CALL_RCU_RT) : 0) == 0
        }
    }

    /// Stops the per-CPU callback threads; their queued callbacks move to
    /// the default worker (`free_all_cpu_call_rcu_data`). Blocks until
    /// they have ended (an online QSBR caller goes offline meanwhile).
    @available(*, noasync, message: "blocks the thread; use 'await removePerCPUCallbackWorkers()' in async code")
    public static func removePerCPUCallbackWorkers() {
        perCPUWorkersLock.withLock { _ in
            let threads = (0..<possibleCPUCount).compactMap { cpu in
                _liburcu.get_cpu_call_rcu_data(cpu).map { _liburcu.get_call_rcu_thread($0) }
            }
            // A grace period, then each thread's stop and end.
            whileBlocked {
                _liburcu.free_all_cpu_call_rcu_data()
                threads.forEach(joinStoppedWorker)
            }
        }
    }

    /// ``removePerCPUCallbackWorkers()`` for async code: the task suspends
    /// while a thread of its own waits.
    public static func removePerCPUCallbackWorkers() async {
        await onThreadOfItsOwn {
            func remove() { removePerCPUCallbackWorkers() }
            remove()
        }
    }

    /// Whether the CPU has its own callback thread.
    public static func hasCallbackWorker(forCPU cpu: Int32) -> Bool {
        _liburcu.get_cpu_call_rcu_data(cpu) != nil
    }

    /// Starts the flavor's default callback thread if it is not known to
    /// run: liburcu starts it on the first `call_rcu`, and stops the process
    /// if it cannot.
    static func startDefaultCallbackThread() throws(CallbackThreadUnavailable) {
        if _accounting.hasDefaultCallbackThread.load(ordering: .acquiring) { return }
        try reserveThreads(1)
        _ = _liburcu.get_default_call_rcu_data()
        _accounting.hasDefaultCallbackThread.store(true, ordering: .releasing)
    }

    /// For ``call(_:)`` and ``retire(_:)``, which have no way to report
    /// that the default callback thread cannot be started: a clear stop
    /// instead of liburcu's.
    @inline(__always)
    static func requireDefaultCallbackThread() {
        guard _slowPath(!_accounting.hasDefaultCallbackThread.load(ordering: .relaxed)) else { return }
        do {
            try startDefaultCallbackThread()
        } catch {
            fatalError(
                "swift-urcu: cannot start the \(name) callback thread that call() and retire() need "
                    + "(pthread_create: \(String(cString: strerror(error.code))))")
        }
    }
}

/// Serialises creating and removing per-CPU workers, so that the threads
/// `removePerCPUCallbackWorkers` joins are the ones it stopped.
private let perCPUWorkersLock = Lock(())

/// How many CPUs liburcu gives per-CPU workers: the highest possible CPU
/// number plus one, from `/sys/devices/system/cpu/possible` ("0-3,8-11"),
/// else the configured CPUs, as liburcu counts them.
private let possibleCPUCount: Int32 = {
    let file = open("/sys/devices/system/cpu/possible", O_RDONLY)
    if file >= 0 {
        defer { close(file) }
        var text = [UInt8](repeating: 0, count: 1_024)
        let length = read(file, &text, text.count)
        let numbers = text[..<max(length, 0)].split { !(UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
        if let highest = numbers.last.flatMap({ Int32(String(decoding: $0, as: UTF8.self)) }) { return highest + 1 }
    }
    return Int32(sysconf(Int32(_SC_NPROCESSORS_CONF)))
}()

/// Whether the loaded liburcu joins the thread of a worker it frees.
/// liburcu 0.13.2 and earlier never join it, so the thread's stack stays
/// mapped (8 MiB of address space per worker, with the default stack
/// size); 0.13.3 fixed that along with adding `urcu_memb_exit`, by which it
/// is recognised. Joining a thread twice is undefined.
private let liburcuJoinsStoppedWorkers = dlsym(nil, "urcu_memb_exit") != nil

/// Joins the thread of a worker liburcu has just freed, unless liburcu has.
/// Nobody else joins it (liburcu does not detach it).
private func joinStoppedWorker(_ thread: pthread_t) {
    if liburcuJoinsStoppedWorkers { return }
    let status = pthread_join(thread, nil)
    precondition(status == 0, "swift-urcu: joining a stopped callback thread failed: \(String(cString: strerror(status)))")
}

/// Makes sure `count` more threads can run at once before liburcu is asked
/// for callback threads: liburcu 0.13.2 stops the process when
/// `pthread_create` fails. Starts `count` threads that wait for each
/// other, then ends them, and waits until the kernel has reaped them: it
/// counts a thread against `RLIMIT_NPROC` until then, a moment after
/// `pthread_join` returns. glibc keeps their stacks for the next threads.
/// Threads that other code starts meanwhile can still take the room.
private func reserveThreads(_ count: Int) throws(CallbackThreadUnavailable) {
    final class Gate: Sendable {
        let isOpen = Atomic<Bool>(false)
    }
    final class Probe: Sendable {
        let gate: Gate
        let threadID = Atomic<pid_t>(0)
        init(_ gate: Gate) { self.gate = gate }
    }
    let gate = Gate()
    var probes: [(thread: pthread_t, probe: Probe)] = []
    var failure: Int32 = 0
    while probes.count < count {
        let probe = Probe(gate)
        let context = Unmanaged.passRetained(probe)
        var thread = pthread_t()
        // Default attributes, as liburcu's: the same stack size.
        failure = pthread_create(&thread, nil, { raw in
            let probe = Unmanaged<Probe>.fromOpaque(raw!).takeRetainedValue()
            probe.threadID.store(gettid(), ordering: .relaxed)
            while !probe.gate.isOpen.load(ordering: .acquiring) { usleep(100) }
            return nil
        }, context.toOpaque())
        guard failure == 0 else {
            context.release()
            break
        }
        probes.append((thread, probe))
    }
    gate.isOpen.store(true, ordering: .releasing)
    for (thread, probe) in probes {
        pthread_join(thread, nil)
        let task = "/proc/self/task/\(probe.threadID.load(ordering: .relaxed))"
        let deadline = monotonicSeconds() + 1
        while access(task, F_OK) == 0 && monotonicSeconds() < deadline { usleep(100) }
    }
    if failure != 0 { throw CallbackThreadUnavailable(code: failure) }
}
