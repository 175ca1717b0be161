// The benchmark: Swift over liburcu against C over liburcu, and against
// locks, in one process. Run with `make bench` (a release build).
//
// Each read case runs on 2 threads at once (the machine's cores) and reports
// nanoseconds per operation per thread, the median of several rounds.

import CBaseline
import Foundation
import PercpuRef
import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

// MARK: Harness


/// Runs `body` on `threads` threads at once, each doing `iterations`
/// operations; returns the median over `rounds` of ns per operation per
/// thread.
func measure(
    threads: Int, iterations: Int, rounds: Int = 5,
    setUp: @escaping @Sendable () -> Void = {}, tearDown: @escaping @Sendable () -> Void = {},
    _ body: @escaping @Sendable (Int) -> Void
) -> Double {
    var samples: [Double] = []
    for _ in 0..<rounds {
        let start = Atomic<Int>(0), ready = Atomic<Int>(0)
        let elapsed = Mutex<[Double]>([])
        let workers = (0..<threads).map { _ in
            JoinableThread {
                setUp()
                ready.wrappingAdd(1, ordering: .releasing)
                while start.load(ordering: .acquiring) == 0 {}
                let begin = monotonicSeconds()
                body(iterations)
                let seconds = monotonicSeconds() - begin
                elapsed.withLock { $0.append(seconds) }
                tearDown()
            }
        }
        while ready.load(ordering: .acquiring) < threads {}
        start.store(1, ordering: .releasing)
        workers.forEach { $0.join() }
        let worst = elapsed.withLock { $0.max()! }
        samples.append(worst / Double(iterations) * 1e9)
    }
    return samples.sorted()[samples.count / 2]
}

/// Keeps results alive so the optimiser cannot drop the loops.
let sink = Atomic<UInt64>(0)
@inline(never) func consume(_ value: UInt64) { sink.wrappingAdd(value, ordering: .relaxed) }

struct Row {
    let name: String
    let nanoseconds: Double
    let baseline: Double?
    let baselineName: String
}

nonisolated(unsafe) var rows: [Row] = []  // written by the main thread only
/// `urcu-bench GROUP...` runs only the named groups (read, locks, call, ref).
let groups = Set(CommandLine.arguments.dropFirst())

func selected(_ group: String) -> Bool { groups.isEmpty || groups.contains(group) }

@MainActor func report(
    _ name: String, _ nanoseconds: Double, against baseline: Double? = nil, baselineName: String = "C"
) {
    rows.append(Row(name: name, nanoseconds: nanoseconds, baseline: baseline, baselineName: baselineName))
    let ratio = baseline.map { String(format: "  (%.2fx \(baselineName))", nanoseconds / $0) } ?? ""
    print(name.padding(toLength: 52, withPad: " ", startingAt: 0) + String(format: "%9.2f ns", nanoseconds) + ratio)
}

// MARK: Read side

final class Node: Sendable {
    let value: UInt64
    init(_ value: UInt64) { self.value = value }
}

final class Shared<F: RCUFlavor>: Sendable {
    let pointer = RCUPointer<Node, F>(Node(1))
}

@inline(never)
func swiftReadLoop<F: RCUFlavor>(_ shared: Shared<F>, _ iterations: Int) -> UInt64 {
    var sum: UInt64 = 0
    for _ in 0..<iterations {
        sum &+= F.read { section in shared.pointer.dereference(in: section) { $0.unsafelyUnwrapped.value } }
    }
    return sum
}

let readIterations = 50_000_000
let cNode = UnsafeMutablePointer<cbaseline_node>.allocate(capacity: 1)
cNode.initialize(to: cbaseline_node(value: 1))
let cSlot = UnsafeMutablePointer<UnsafeMutablePointer<cbaseline_node>?>.allocate(capacity: 1)
cSlot.initialize(to: cNode)
nonisolated(unsafe) let slot = cSlot

@MainActor func readCase<F: RCUFlavor>(
    _ flavor: F.Type, c: @escaping @Sendable (UnsafeMutablePointer<UnsafeMutablePointer<cbaseline_node>?>, UInt64) -> UInt64,
    setUp: @escaping @Sendable () -> Void = {}, tearDown: @escaping @Sendable () -> Void = {}
) {
    let cTime = measure(threads: 2, iterations: readIterations, setUp: setUp, tearDown: tearDown) { n in
        consume(c(slot, UInt64(n)))
    }
    report("C \(F.name): read section + rcu_dereference", cTime)
    let shared = Shared<F>()
    let swiftTime = measure(threads: 2, iterations: readIterations, setUp: setUp, tearDown: tearDown) { n in
        consume(swiftReadLoop(shared, n))
    }
    report("Swift \(F.name): read { dereference(in:) }", swiftTime, against: cTime)
}

print("swift-urcu benchmark: \(machineDescription())")
print("")

if selected("read") {
    readCase(MembarrierRCU.self, c: { cbaseline_memb_read($0, $1) })
    readCase(QuiescentStateRCU.self, c: { cbaseline_qsbr_read($0, $1) },
             setUp: { QuiescentStateRCU.registerThread() }, tearDown: { QuiescentStateRCU.unregisterThread() })
    readCase(MemoryBarrierRCU.self, c: { cbaseline_mb_read($0, $1) })
    readCase(BulletproofRCU.self, c: { cbaseline_bp_read($0, $1) })
}

// Locks protecting the same read, for scale.
if selected("locks") {
    let lockIterations = 5_000_000
    let mutex = Mutex(Node(1))
    report("Swift Mutex: withLock { read }", measure(threads: 2, iterations: lockIterations) { n in
        var sum: UInt64 = 0
        for _ in 0..<n { sum &+= mutex.withLock { $0.value } }
        consume(sum)
    })

    final class RWLocked: @unchecked Sendable {
        var lock = pthread_rwlock_t()
        let node = Node(1)
        init() { pthread_rwlock_init(&lock, nil) }
    }
    let rwlocked = RWLocked()
    report("pthread_rwlock: rdlock, read, unlock", measure(threads: 2, iterations: lockIterations) { n in
        var sum: UInt64 = 0
        for _ in 0..<n {
            pthread_rwlock_rdlock(&rwlocked.lock)
            sum &+= rwlocked.node.value
            pthread_rwlock_unlock(&rwlocked.lock)
        }
        consume(sum)
    })
}

// MARK: call_rcu

if selected("call") {
    // End to end: enqueue `callCount` callbacks, then barrier, so the time
    // includes running and freeing them on the callback thread (the other
    // core), not only queueing.
    let callCount = 1_000_000
    let cCall = measure(threads: 1, iterations: callCount) { n in
        cbaseline_memb_call_rcu_free(UInt64(n))
        MembarrierRCU.barrier()
    }
    report("C memb: malloc + call_rcu(free), then barrier", cCall)
    report("Swift memb: call { closure capturing an Int }, then barrier", measure(threads: 1, iterations: callCount) { n in
        for i in 0..<n { MembarrierRCU.call { consume(UInt64(i)) } }
        MembarrierRCU.barrier()
    }, against: cCall)
    report("Swift memb: assign (new object, retire old), then barrier", measure(threads: 1, iterations: callCount) { n in
        let pointer = RCUPointer<Node, MembarrierRCU>(Node(0))
        for i in 0..<n { pointer.assign(Node(UInt64(i))) }
        MembarrierRCU.barrier()
    }, against: cCall)
}

// MARK: PercpuRef

if selected("ref") {
    let iterations = 20_000_000
    for threads in [1, 2] {
        let shared = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        shared.initialize(to: 1)
        nonisolated(unsafe) let counter = shared
        let atomic = measure(threads: threads, iterations: iterations / 4) { n in
            cbaseline_atomic_get_put(counter, UInt64(n))
        }
        report("C shared atomic get+put, \(threads) thread(s)", atomic)
        let ideal = measure(threads: threads, iterations: iterations) { n in
            cbaseline_thread_local_get_put(UInt64(n))
        }
        report("C thread-local counter (ideal), \(threads) thread(s)", ideal)
        let membRef = PercpuRef<MembarrierRCU> {}
        report("PercpuRef<memb> get+put, \(threads) thread(s)", measure(threads: threads, iterations: iterations) { n in
            for _ in 0..<n { membRef.get(); membRef.put() }
        }, against: ideal, baselineName: "ideal")
        let qsbrRef = PercpuRef<QuiescentStateRCU> {}
        report("PercpuRef<qsbr> get+put, \(threads) thread(s)", measure(
            threads: threads, iterations: iterations,
            setUp: { QuiescentStateRCU.registerThread() }, tearDown: { QuiescentStateRCU.unregisterThread() }
        ) { n in
            for _ in 0..<n { qsbrRef.get(); qsbrRef.put() }
        }, against: ideal, baselineName: "ideal")
    }
}

func machineDescription() -> String {
    var model = "unknown CPU"
    if let file = fopen("/proc/cpuinfo", "r") {
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("model name") {
                model = String(text.split(separator: ":", maxSplits: 1)[1]).trimmingCharacters(in: .whitespacesAndNewlines)
                break
            }
        }
        free(line)
    }
    var date = time(nil)
    var parts = tm()
    gmtime_r(&date, &parts)
    var buffer = [CChar](repeating: 0, count: 32)
    strftime(&buffer, buffer.count, "%Y-%m-%d", &parts)
    let day = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return "\(model), \(sysconf(Int32(_SC_NPROCESSORS_ONLN))) cores, \(day)"
}

print("")
print("| case | ns/op | ratio |")
print("|---|---:|---:|")
for row in rows {
    let ratio = row.baseline.map { String(format: "%.2fx ", row.nanoseconds / $0) + row.baselineName } ?? ""
    print("| \(row.name) | \(String(format: "%.2f", row.nanoseconds)) | \(ratio) |")
}
