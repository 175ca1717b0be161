@testable import ContextTable
import Dispatch
import Foundation
import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

/// A recorded run, written as a module of `Spec/TraceLifecycle.tla` for TLC.
struct TraceModule {
    var name: String
    var records: [String]
    let threads: [String]
    let contexts: Int
    let slots: Int
    let maxRequests: Int
    let budget: Int

    init(name: String, entries: [LifecycleTraceRecorder.Entry], slots: Int, maxRequests: Int, budget: Int) {
        self.name = name
        records = entries.map(\.tlaRecord)
        threads = Set(entries.compactMap(\.thread)).sorted()
        contexts = entries.map { entry -> Int in
            let step = entry.step
            return step.context.map { Int($0.dropFirst())! } ?? 0
        }.max() ?? 0
        self.slots = slots
        self.maxRequests = maxRequests
        self.budget = budget
    }

    func write(to directory: URL) throws {
        let module = """
            ---- MODULE \(name) ----
            EXTENDS TraceLifecycle
            TraceData == <<
            \(records.map { "  " + $0 }.joined(separator: ",\n"))
            >>
            TraceContexts == 1..\(contexts)
            TraceThreads == {\(threads.map { "\"\($0)\"" }.joined(separator: ", "))}
            TraceSlots == 0..\(slots - 1)
            ====

            """
        let config = """
            CONSTANTS
                Trace <- TraceData
                Contexts <- TraceContexts
                Threads <- TraceThreads
                Slots <- TraceSlots
                MaxRequests = \(maxRequests)
                AioMaxNr = \(budget)
                Flavors = {"rcu"}
                TableFlavor = "rcu"
                RefFlavor = "rcu"
                RefInitModes = {"percpu", "atomic"}
                NoContext = 0
                Bug = "None"
            INIT TraceInit
            NEXT TraceNext
            INVARIANT TraceIncomplete

            """
        try module.write(to: directory.appendingPathComponent("\(name).tla"), atomically: true, encoding: .utf8)
        try config.write(to: directory.appendingPathComponent("\(name).cfg"), atomically: true, encoding: .utf8)
    }
}

/// TLC's verdict on each trace in `directory` (`Spec/check-traces.sh`):
/// the name, whether it was accepted, and the script's line.
func checkTraces(in directory: URL) throws -> [String: (accepted: Bool, line: String)] {
    let output = try runProcess(repositoryRoot.appendingPathComponent("Spec/check-traces.sh").path, [directory.path])
    guard output.status == 0 else {
        throw ConformanceFailure("check-traces.sh failed:\n\(output.standardOutput)\(output.standardError)")
    }
    var verdicts: [String: (Bool, String)] = [:]
    for line in output.standardOutput.split(separator: "\n") {
        let words = line.split(separator: " ")
        guard words.count >= 2 else { continue }
        verdicts[String(words[1]).trimmingCharacters(in: CharacterSet(charactersIn: ":"))] = (words[0] == "accepted", String(line))
    }
    return verdicts
}

/// Where a test writes its traces: `.build/traces/<suite>` under the
/// package, emptied first.
func traceDirectory(_ name: String) throws -> URL {
    let directory = repositoryRoot.appendingPathComponent(".build/traces/\(name)")
    try? FileManager.default.removeItem(at: directory)
    try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    return directory
}


extension Conformance {
@Suite("Trace validation of real runs by TLC")
struct TraceValidationTests {
    static let slots = 3, maxRequests = 2, budget = 4

    /// Threads look contexts up, submit, complete and destroy them at
    /// random, on real threads over a real liburcu flavor; the table then
    /// shuts down. Returns the recorded run.
    static func randomRun<Flavor: RCUFlavor>(_ flavor: Flavor.Type, seed: UInt64, operations: Int)
        -> [LifecycleTraceRecorder.Entry]
    {
        let recorder = LifecycleTraceRecorder()
        let table = ContextTable<Flavor>(
            capacity: slots, requestBudget: budget, cleanupExecutor: nil, reclamation: DoubleBounce(),
            recorder: recorder)
        let known = Mutex<[ContextID]>([])
        let inFlight = Mutex<[ContextRequest<Flavor>]>([])
        let threads = 3
        runThreads(threads) { index in
            var random = SplitMix(seed: seed &* 1_000_003 &+ UInt64(index))
            for _ in 0..<operations {
                // A varied schedule: sometimes yield, sometimes spin.
                switch Int.random(in: 0..<8, using: &random) {
                case 0: sched_yield()
                case 1: for _ in 0..<Int.random(in: 0..<2_000, using: &random) { _ = random.next() }
                default: break
                }
                let choice = Int.random(in: 0..<10, using: &random)
                let someID = known.withLock { $0.randomElement(using: &random) }
                switch choice {
                case 0, 1:
                    let requests = Int.random(in: 0..<12, using: &random) == 0 ? 0 : maxRequests
                    let atomic = Int.random(in: 0..<4, using: &random) == 0
                    if let id = try? table.create(maxRequests: requests, atomicReferences: atomic) {
                        known.withLock { $0.append(id) }
                    }
                case 2...6:
                    guard let someID, let lease = table.lookup(someID) else { continue }
                    for _ in 0..<Int.random(in: 0...2, using: &random) {
                        if let request = try? lease.submit() { inFlight.withLock { $0.append(request) } }
                    }
                    if Int.random(in: 0..<6, using: &random) == 0 { try? table.destroy(lease) }
                case 7, 8:
                    let request = inFlight.withLock { $0.isEmpty ? nil : $0.remove(at: Int.random(in: 0..<$0.count, using: &random)) }
                    request?.complete()
                default:
                    if let someID { try? table.destroy(someID) }
                }
            }
        }
        for request in inFlight.withLock({ $0 }) { request.complete() }
        inFlight.withLock { $0 = [] }
        let statistics = table.shutdown(timeoutSeconds: 60)
        #expect(statistics.live == 0 && statistics.pendingFrees == 0, "run \(seed) did not finish: \(statistics)")
        return recorder.recorded
    }

    @Test("random runs on real threads are behaviours of the spec")
    func randomRuns() async throws {
        let directory = try traceDirectory("random")
        let runs = 24
        var events = 0
        let started = Date()
        for seed in 0..<runs {
            let operations = 80
            let entries: [LifecycleTraceRecorder.Entry] = await offPool {
                switch seed % 3 {
                case 0: Self.randomRun(MembarrierRCU.self, seed: UInt64(seed), operations: operations)
                case 1: Self.randomRun(BulletproofRCU.self, seed: UInt64(seed), operations: operations)
                default: Self.randomRun(MemoryBarrierRCU.self, seed: UInt64(seed), operations: operations)
                }
            }
            events += entries.count
            // 80 operations of 3 threads give about 200–400 events, fewer
            // when many lookups miss: a run that recorded under 100 did
            // not run its workload.
            #expect(entries.count >= 100, "run \(seed) recorded only \(entries.count) events")
            try TraceModule(
                name: "Trace_\(String(format: "%02d", seed))", entries: entries, slots: Self.slots,
                maxRequests: Self.maxRequests, budget: Self.budget
            ).write(to: directory)
        }
        let recorded = Date()
        let verdicts = try checkTraces(in: directory)
        print("""
            trace validation: \(verdicts.values.filter(\.accepted).count)/\(runs) traces accepted, \(events) events; \
            runs \(String(format: "%.1f", recorded.timeIntervalSince(started))) s, \
            TLC \(String(format: "%.1f", Date().timeIntervalSince(recorded))) s
            """)
        #expect(verdicts.count == runs)
        for (name, verdict) in verdicts.sorted(by: { $0.key < $1.key }) where !verdict.accepted {
            Issue.record("\(verdict.line)\nrerun: Spec/check-traces.sh \(directory.path) \(name)")
        }
    }

    /// A reader stopped inside its read section, after loading the context,
    /// while the context is destroyed and its last reference dropped: the
    /// free must wait for it. Refs start atomic, so no mode switch (whose
    /// own grace period would also wait for the reader) hides the bug.
    static func readerInsideTeardown() throws -> [LifecycleTraceRecorder.Entry] {
        let parked = DispatchSemaphore(value: 0), resume = DispatchSemaphore(value: 0)
        let parkNext = Atomic<Bool>(false)
        let recorder = LifecycleTraceRecorder(afterStep: { event in
            if case .lookupLoad = event, parkNext.exchange(false, ordering: .relaxed) {
                parked.signal()
                resume.wait()
            }
        })
        let table = ContextTable<MembarrierRCU>(
            capacity: 1, requestBudget: 1, cleanupExecutor: nil, reclamation: DoubleBounce(), recorder: recorder)
        let id = try table.create(maxRequests: 1, atomicReferences: true)
        let holder = table.lookup(id)
        parkNext.store(true, ordering: .relaxed)
        let reader = JoinableThread(name: "reader") { _ = table.lookup(id) }
        parked.wait()
        try table.destroy(holder!)
        _ = consume holder
        // The free is queued behind a grace period the reader holds up.
        resume.signal()
        reader.join()
        let statistics = table.waitForAll()
        #expect(statistics.isClean, "\(statistics)")
        return recorder.recorded
    }

    @Test("negative controls: traces that free before the last reader leaves are rejected")
    func negativeControls() async throws {
        let directory = try traceDirectory("controls")
        let entries = try await offPool { Result { try Self.readerInsideTeardown() } }.get()
        let steps = entries.map { $0.step }
        let module = TraceModule(
            name: "Control_recorded", entries: entries, slots: 1, maxRequests: 1, budget: 1)
        try module.write(to: directory)
        // Edit: the free (its grace-period callback and the work) moved to
        // just after the reqs release, before the reader leaves.
        guard let release = steps.firstIndex(where: { $0.action == "ReqsRelease" }),
              let callback = steps.firstIndex(where: { $0.action == "FreeRcuCallback" }),
              let work = steps.firstIndex(where: { $0.action == "FreeWork" }),
              let readerLeaves = steps.firstIndex(where: { $0.action == "LookupTrygetLiveFails" }),
              release < readerLeaves, readerLeaves < callback
        else {
            Issue.record("the scenario did not record the expected order: \(steps)")
            return
        }
        var early = module
        early.name = "Control_freed_before_reader_leaves"
        let freeRecords = [early.records[callback], early.records[work]]
        early.records.remove(at: work)
        early.records.remove(at: callback)
        early.records.insert(contentsOf: freeRecords, at: readerLeaves)
        try early.write(to: directory)
        // Recorded from the implementation with the 2018 bug (no grace
        // period before the free), in the same scenario.
        let buggy = try Self.buggyReaderInsideTeardown()
        try TraceModule(name: "Control_free_from_release", entries: buggy, slots: 1, maxRequests: 1, budget: 1)
            .write(to: directory)

        let verdicts = try checkTraces(in: directory)
        #expect(verdicts["Control_recorded"]?.accepted == true, "\(verdicts["Control_recorded"]?.line ?? "no verdict")")
        for name in ["Control_freed_before_reader_leaves", "Control_free_from_release"] {
            let line = verdicts[name]?.line ?? "no verdict"
            #expect(verdicts[name]?.accepted == false, "\(line)")
            #expect(line.contains("FreeRcuCallback"), "rejected elsewhere than at the free: \(line)")
        }
    }

    /// The reader scenario on the buggy variant (``FreeWithoutGracePeriod``)
    /// over ``ModelFlavor``: the free runs while the reader is inside its
    /// section. The reader is left parked (its context is freed: letting it
    /// go on would be the use after free), in a domain of its own.
    static func buggyReaderInsideTeardown() throws -> [LifecycleTraceRecorder.Entry] {
        let run = try ModelRun.readerInsideTeardown(reclamation: FreeWithoutGracePeriod())
        return run.recorder.recorded
    }
}
}
