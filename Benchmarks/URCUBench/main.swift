// The benchmark: Swift over liburcu against C over liburcu, and against
// locks, in one process. Run with `make bench` (a release build).
//
// Read cases run on 2 threads at once (the machine's cores). Every group
// times its baseline and its candidates in interleaved rounds and reports
// the median time (ns per operation per thread) and the median of the
// per-round ratios.

import CBaseline
import ContextTable
import Foundation
import PercpuRef
import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

// MARK: Harness

/// One thing to time: `body(n)` does n operations on each of `threads`
/// threads at once.
struct Case {
    let name: String
    var threads = 2
    let iterations: Int
    var setUp: @Sendable () -> Void = {}
    var tearDown: @Sendable () -> Void = {}
    let body: @Sendable (Int) -> Void
}

/// One timing of `run`: nanoseconds per operation per thread (the slowest
/// thread's).
func time(_ run: Case) -> Double {
    let start = Atomic<Int>(0), ready = Atomic<Int>(0)
    let elapsed = Mutex<[Double]>([])
    let workers = (0..<run.threads).map { _ in
        JoinableThread {
            run.setUp()
            ready.wrappingAdd(1, ordering: .releasing)
            while start.load(ordering: .acquiring) == 0 {}
            let begin = monotonicSeconds()
            run.body(run.iterations)
            let seconds = monotonicSeconds() - begin
            elapsed.withLock { $0.append(seconds) }
            run.tearDown()
        }
    }
    while ready.load(ordering: .acquiring) < run.threads {}
    start.store(1, ordering: .releasing)
    workers.forEach { $0.join() }
    return elapsed.withLock { $0.max()! } / Double(run.iterations) * 1e9
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }

/// Times `baseline` and each candidate in interleaved rounds, so that all
/// of them see the same machine (a shared VM's noise moves between
/// rounds), and reports medians of the times and of the per-round ratios.
@MainActor
func compare(_ baseline: Case, _ candidates: [Case], baselineName: String = "C", rounds: Int = 7) {
    var baselineTimes: [Double] = []
    var times = Array(repeating: [Double](), count: candidates.count)
    var ratios = Array(repeating: [Double](), count: candidates.count)
    for _ in 0..<rounds {
        let reference = time(baseline)
        baselineTimes.append(reference)
        for (index, candidate) in candidates.enumerated() {
            let measured = time(candidate)
            times[index].append(measured)
            ratios[index].append(measured / reference)
        }
    }
    report(baseline.name, median(baselineTimes))
    for (index, candidate) in candidates.enumerated() {
        report(candidate.name, median(times[index]), ratio: median(ratios[index]), baselineName: baselineName)
    }
}

/// Keeps results alive so the optimiser cannot drop the loops.
let sink = Atomic<UInt64>(0)
@inline(never) func consume(_ value: UInt64) { sink.wrappingAdd(value, ordering: .relaxed) }

struct Row {
    let name: String
    let nanoseconds: Double
    let ratio: String
}

nonisolated(unsafe) var rows: [Row] = []  // written by the main thread only

/// `urcu-bench GROUP...` runs only the named groups (read, locks, call, ref,
/// scale, exit).
let groups = Set(CommandLine.arguments.dropFirst())

func selected(_ group: String) -> Bool { groups.isEmpty || groups.contains(group) }

@MainActor
func report(_ name: String, _ nanoseconds: Double, ratio: Double? = nil, baselineName: String = "C") {
    let ratioText = ratio.map { String(format: "%.2fx %@", $0, baselineName) } ?? ""
    rows.append(Row(name: name, nanoseconds: nanoseconds, ratio: ratioText))
    print(name.padding(toLength: 60, withPad: " ", startingAt: 0) + String(format: "%9.2f ns  ", nanoseconds) + ratioText)
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

let readIterations = 20_000_000
let cNode = UnsafeMutablePointer<cbaseline_node>.allocate(capacity: 1)
cNode.initialize(to: cbaseline_node(value: 1))
let cSlot = UnsafeMutablePointer<UnsafeMutablePointer<cbaseline_node>?>.allocate(capacity: 1)
cSlot.initialize(to: cNode)
nonisolated(unsafe) let slot = cSlot

/// Whether QSBR's read side carries its checks (the default trait
/// QSBRReadSideChecks; `make bench` also runs the read group without it).
#if QSBRReadSideChecks
let qsbrReadSide = "checked"
#else
let qsbrReadSide = "unchecked: trait QSBRReadSideChecks off"
#endif

@MainActor
func readCases<F: RCUFlavor>(
    _ flavor: F.Type, c: @escaping @Sendable (UnsafeMutablePointer<UnsafeMutablePointer<cbaseline_node>?>, UInt64) -> UInt64,
    setUp: @escaping @Sendable () -> Void = {}, tearDown: @escaping @Sendable () -> Void = {}
) {
    let shared = Shared<F>()
    compare(
        Case(name: "C \(F.name): read section + rcu_dereference", iterations: readIterations,
             setUp: setUp, tearDown: tearDown) { n in consume(c(slot, UInt64(n))) },
        [Case(name: "Swift \(F.name)\(F.self == QuiescentStateRCU.self ? " (\(qsbrReadSide))" : ""): read { dereference(in:) }",
              iterations: readIterations,
              setUp: setUp, tearDown: tearDown) { n in consume(swiftReadLoop(shared, n)) }])
}

// The memory measurements, each in a process of its own (see "scale").
if CommandLine.arguments.count == 3, CommandLine.arguments[1] == "bytes-per-ref" {
    print(bytesPerRef(threads: Int(CommandLine.arguments[2])!))
    exit(0)
}
if CommandLine.arguments.count == 2, CommandLine.arguments[1] == "context-bytes" {
    print(bytesPerContext())
    exit(0)
}

print("swift-urcu benchmark: \(machineDescription())")
print("")

if selected("read") {
    readCases(MembarrierRCU.self, c: { cbaseline_memb_read($0, $1) })
    readCases(QuiescentStateRCU.self, c: { cbaseline_qsbr_read($0, $1) },
              setUp: { QuiescentStateRCU.registerThread() }, tearDown: { QuiescentStateRCU.unregisterThread() })
    readCases(MemoryBarrierRCU.self, c: { cbaseline_mb_read($0, $1) })
    readCases(BulletproofRCU.self, c: { cbaseline_bp_read($0, $1) })
}

// Locks protecting the same read, for scale.
if selected("locks") {
    let lockIterations = 2_000_000
    let mutex = Mutex(Node(1))
    final class RWLocked: @unchecked Sendable {
        var lock = pthread_rwlock_t()
        let node = Node(1)
        init() { pthread_rwlock_init(&lock, nil) }
    }
    let rwlocked = RWLocked()
    let shared = Shared<MembarrierRCU>()
    compare(
        Case(name: "Swift memb: read { dereference(in:) }", iterations: lockIterations) { n in
            consume(swiftReadLoop(shared, n))
        },
        [
            Case(name: "Swift Mutex: withLock { read }", iterations: lockIterations) { n in
                var sum: UInt64 = 0
                for _ in 0..<n { sum &+= mutex.withLock { $0.value } }
                consume(sum)
            },
            Case(name: "pthread_rwlock: rdlock, read, unlock", iterations: lockIterations) { n in
                var sum: UInt64 = 0
                for _ in 0..<n {
                    pthread_rwlock_rdlock(&rwlocked.lock)
                    sum &+= rwlocked.node.value
                    pthread_rwlock_unlock(&rwlocked.lock)
                }
                consume(sum)
            },
        ], baselineName: "RCU")
}

// MARK: call_rcu

if selected("call") {
    // End to end: enqueue `callCount` callbacks from one thread, then
    // barrier, so the time includes running and freeing them on the
    // callback thread (the other core), not only queueing.
    let callCount = 500_000
    compare(
        Case(name: "C memb: malloc + call_rcu(free), then barrier", threads: 1, iterations: callCount) { n in
            cbaseline_memb_call_rcu_free(UInt64(n))
            MembarrierRCU.barrier()
        },
        [
            Case(name: "Swift memb: call { closure capturing an Int }, then barrier", threads: 1, iterations: callCount) { n in
                for i in 0..<n { MembarrierRCU.call { consume(UInt64(i)) } }
                MembarrierRCU.barrier()
            },
            Case(name: "Swift memb: assign (new object, retire old), then barrier", threads: 1, iterations: callCount) { n in
                let pointer = RCUPointer<Node, MembarrierRCU>(Node(0))
                for i in 0..<n { pointer.assign(Node(UInt64(i))) }
                MembarrierRCU.barrier()
            },
        ])
}

// MARK: PercpuRef

if selected("ref") {
    let iterations = 10_000_000
    let shared = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    shared.initialize(to: 1)
    nonisolated(unsafe) let counter = shared
    let membRef = PercpuRef<MembarrierRCU> {}
    let qsbrRef = PercpuRef<QuiescentStateRCU> {}
    // The models' ref word: percpu mode, offset 256.
    let modelWord = UnsafeMutablePointer<UInt>.allocate(capacity: 1)
    modelWord.initialize(to: 256)
    nonisolated(unsafe) let word = modelWord
    for threads in [1, 2] {
        compare(
            Case(name: "C thread-local counter (ideal), \(threads) thread(s)", threads: threads, iterations: iterations) { n in
                cbaseline_thread_local_get_put(UInt64(n))
            },
            [
                Case(name: "C shared atomic get+put, \(threads) thread(s)", threads: threads, iterations: iterations / 4) { n in
                    cbaseline_atomic_get_put(counter, UInt64(n))
                },
                Case(name: "C memb read section around each, \(threads) thread(s)", threads: threads, iterations: iterations) { n in
                    MembarrierRCU.withRegisteredThread { cbaseline_memb_sections_get_put(UInt64(n)) }
                },
                Case(name: "PercpuRef<memb> get+put, \(threads) thread(s)", threads: threads, iterations: iterations) { n in
                    for _ in 0..<n { membRef.get(); membRef.put() }
                },
                Case(name: "PercpuRef<qsbr> get+put, \(threads) thread(s)", threads: threads, iterations: iterations,
                     setUp: { QuiescentStateRCU.registerThread() }, tearDown: { QuiescentStateRCU.unregisterThread() }) { n in
                    for _ in 0..<n { qsbrRef.get(); qsbrRef.put() }
                },
                Case(name: "C model of that get+put (area loaded), \(threads) thread(s)", threads: threads, iterations: iterations) { n in
                    cbaseline_counter_model_area_reloaded(word, UInt64(n))
                },
                Case(name: "C model, counters at the thread pointer, \(threads) thread(s)", threads: threads, iterations: iterations) { n in
                    cbaseline_counter_model_thread_relative(word, UInt64(n))
                },
            ], baselineName: "ideal")
    }
}

// MARK: PercpuRef at scale

/// The process's resident set, in bytes (`/proc/self/statm`).
func residentBytes() -> Int {
    guard let file = fopen("/proc/self/statm", "r") else { return 0 }
    defer { fclose(file) }
    var size = 0, resident = 0
    _ = withUnsafeMutablePointer(to: &size) { sizePointer in
        withUnsafeMutablePointer(to: &resident) { withVaList([sizePointer, $0]) { vfscanf(file, "%ld %ld", $0) } }
    }
    return resident * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// Runs `body(index)` on `threads` threads that exist, and have run
/// `prepare` (touching their stacks), before `measure` is called first;
/// returns `measure`'s results before and after the bodies ran, with all
/// threads still alive at both.
func measureAroundThreads(
    _ threads: Int, prepare: @escaping @Sendable () -> Void = {}, measure: () -> Double,
    _ body: @escaping @Sendable (Int) -> Void
) -> (before: Double, after: Double) {
    let go = Latch(), finish = Latch()
    let ready = Counter(), done = Counter()
    let workers = (0..<threads).map { index in
        JoinableThread {
            prepare()
            ready.increment()
            go.wait()
            body(index)
            done.increment()
            finish.wait()
        }
    }
    _ = eventually { ready.value == threads }
    let before = measure()
    go.open()
    _ = eventually { done.value == threads }
    let after = measure()
    finish.open()
    workers.forEach { $0.join() }
    return (before, after)
}

enum Measured { static let refs = 20_000 }

/// `urcu-bench bytes-per-ref THREADS` (a fresh process for each count, so
/// that no earlier measurement's memory is reused): the resident-set
/// growth per ref when `Measured.refs` refs are created and each is used
/// (get+put) by THREADS threads.
func bytesPerRef(threads: Int) -> Double {
    nonisolated(unsafe) var refs: [PercpuRef<MembarrierRCU>] = []
    let (before, after) = measureAroundThreads(
        threads, prepare: { MembarrierRCU.read { _ in } },
        measure: {
            if refs.isEmpty { let rss = residentBytes(); refs = (0..<Measured.refs).map { _ in PercpuRef {} }; return Double(rss) }
            return Double(residentBytes())
        }
    ) { _ in
        for ref in refs { ref.get(); ref.put() }
    }
    return (after - before) / Double(Measured.refs)
}

/// `urcu-bench context-bytes`: the resident-set growth per ContextTable
/// context (maxRequests 1), each looked up once.
func bytesPerContext() -> Double {
    let count = Measured.refs / 2
    let table = ContextTable<MembarrierRCU>(capacity: count, requestBudget: count)
    let before = residentBytes()
    let ids = (0..<count).map { _ in try! table.create(maxRequests: 1) }
    for id in ids { _ = table.lookup(id) }
    let after = residentBytes()
    withExtendedLifetime(table) {}
    return Double(after - before) / Double(count)
}

/// Runs this benchmark again as `urcu-bench ARGUMENTS` and returns the
/// number it prints.
func measuredInFreshProcess(_ arguments: [String]) -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    process.arguments = arguments
    let output = Pipe()
    process.standardOutput = output
    try! process.run()
    let data = output.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return Double(String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? .nan
}

/// Prints a row whose figure is not a time.
@MainActor
func reportQuantity(_ name: String, _ value: Double, unit: String, note: String = "") {
    rows.append(Row(name: name, nanoseconds: value, ratio: note))
    print(name.padding(toLength: 60, withPad: " ", startingAt: 0) + String(format: "%9.0f %@  ", value, unit) + note)
}

if selected("scale") {
    // Memory: bytes per ref (RSS growth over 20,000 refs, each used by 1,
    // 2 or 64 threads), and per ContextTable context (two refs and more).
    for threads in [1, 2, 64] {
        reportQuantity("PercpuRef memory per ref, used by \(threads) thread(s)",
                       measuredInFreshProcess(["bytes-per-ref", String(threads)]), unit: "B", note: "bytes (RSS / 20,000 refs)")
    }
    reportQuantity("ContextTable context memory (maxRequests 1, looked up once)",
                   measuredInFreshProcess(["context-bytes"]), unit: "B", note: "bytes (RSS / 10,000 contexts)")

    // Aggregate throughput: the same total of get+put pairs on one memb
    // ref, shared among 2, 64 or 256 live threads; wall time over all the
    // pairs, in interleaved rounds, ratio to 2 threads.
    let totalPairs = 32_000_000
    let ref = PercpuRef<MembarrierRCU> {}
    func aggregateNanoseconds(threads: Int) -> Double {
        let (start, end) = measureAroundThreads(
            threads, prepare: { MembarrierRCU.read { _ in } }, measure: monotonicSeconds
        ) { _ in
            for _ in 0..<(totalPairs / threads) { ref.get(); ref.put() }
        }
        return (end - start) / Double(totalPairs) * 1e9
    }
    let threadCounts = [2, 64, 256]
    var times = Array(repeating: [Double](), count: threadCounts.count)
    var ratios = Array(repeating: [Double](), count: threadCounts.count)
    for _ in 0..<5 {
        let measured = threadCounts.map { aggregateNanoseconds(threads: $0) }
        for index in threadCounts.indices {
            times[index].append(measured[index])
            ratios[index].append(measured[index] / measured[0])
        }
    }
    for (index, threads) in threadCounts.enumerated() {
        report("PercpuRef<memb> get+put aggregate (wall ns / pair), \(threads) threads", median(times[index]),
               ratio: index == 0 ? nil : median(ratios[index]), baselineName: "2 threads")
    }
}

if selected("exit") {
    // Short-lived threads in a process with 100,000 refs: each starts,
    // takes and drops a reference and exits, folding its counters; against
    // threads that start, read under memb (registering, as a get does)
    // and exit without counting, in interleaved rounds. ns per thread.
    let refs = (0..<100_000).map { _ in PercpuRef<MembarrierRCU> {} }
    let ref = refs[refs.count / 2]
    let threads = 100
    compare(
        Case(name: "short-lived thread (memb read section, exit)", threads: 1, iterations: threads) { n in
            for _ in 0..<n { JoinableThread { MembarrierRCU.read { _ in } }.join() }
        },
        [
            Case(name: "PercpuRef short-lived thread (get+put, exit), 100,000 refs", threads: 1, iterations: threads) { n in
                for _ in 0..<n { JoinableThread { ref.get(); ref.put() }.join() }
            },
        ], baselineName: "memb read")
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
    print("| \(row.name) | \(String(format: "%.2f", row.nanoseconds)) | \(row.ratio) |")
}
