@testable import ContextTable
import PropertyBased
import Synchronization
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

@Suite("Context lifecycle races")
struct RaceTests {
    /// With `atomicRefs`, both refs are switched to atomic mode first, so
    /// the teardown runs no internal grace period at all (the second way the
    /// 2018 bug bites): only the explicit one protects the reader.
    @Test("a reader that found a context under RCU keeps it readable through destroy and the last complete",
          arguments: [MembarrierRCU.self, MemoryBarrierRCU.self, BulletproofRCU.self] as [any RCUFlavor.Type],
          [false, true])
    func readerOutlivesDestroy(flavor: any RCUFlavor.Type, atomicRefs: Bool) throws {
        func check<F: RCUFlavor>(_: F.Type) throws {
            let table = ContextTable<F>(capacity: 2, requestBudget: 10)
            let id = try table.create(maxRequests: 2)
            let request = try table.lease(id).submit()
            if atomicRefs {
                let context = try table.lease(id).context
                context.users.switchToAtomicSync()
                context.reqs.switchToAtomicSync()
            }
            let found = Latch(), tornDown = Latch(), sawFreed = Latch(), readRing = Latch()
            let reader = JoinableThread {
                F.read { section in
                    // Found under RCU, without taking a reference, like the
                    // table walk in the kernel's aio_ring_mremap.
                    do {
                        guard let context = table.context(inSlot: id.slot, in: section) else { return }
                        found.open()
                        tornDown.wait()
                        // destroy ran and the last request completed: only
                        // the grace period keeps the context alive now.
                        usleep(50_000)
                        if context.isFreed { sawFreed.open() }
                        if context.ring.userIndices.pointee.head != .max { readRing.open() }
                    }
                }
            }
            found.wait()
            try table.destroy(id)
            request.complete()
            tornDown.open()
            reader.join()
            #expect(!sawFreed.isOpen, "context freed while a reader that found it was in its section")
            #expect(readRing.isOpen, "ring poisoned under the reader")
            let statistics = table.waitForAll(timeoutSeconds: teardownStallSeconds)
            #expect(statistics.isClean, "\(statistics)")
        }
        try check(flavor)
    }

    // Not shrunk: every rerun of an input that leaks waits out the stall
    // limit, and the first failing input already names the seed.
    @Test("fuzzed ring indices change nothing in the lifecycle", .shrinking(false))
    func fuzzedRingIndices() async {
        await propertyCheck(count: 50, input: Gen.uint32(in: 0...UInt32.max).array(of: 1...20), Gen.int(in: 1...6)) { garbage, requests in
            Self.scribble(garbage, requests: requests)
        }
    }

    /// User space scribbles over head and tail between submissions,
    /// completions and reaps; only the requests may decide the teardown.
    static func scribble(_ garbage: [UInt32], requests: Int) {
        let table = ContextTable<MembarrierRCU>(capacity: 2, requestBudget: 100)
        guard let id = try? table.create(maxRequests: requests) else {
            Issue.record("create failed")
            return
        }
        var inFlight: [ContextRequest<MembarrierRCU>] = []
        guard let lease = table.lookup(id) else {
            Issue.record("lookup failed")
            return
        }
        for (index, value) in garbage.enumerated() {
            if index % 2 == 0 {
                lease.userRingIndices.pointee.head = value
            } else {
                lease.userRingIndices.pointee.tail = value
            }
            if let request = try? lease.submit() { inFlight.append(request) }
            if index % 3 == 0, let request = inFlight.popLast() { request.complete() }
            _ = lease.reapEvents(maximum: Int(value % 4))
        }
        _ = consume lease
        try? table.destroy(id)
        // With requests still in flight, the users release cancels them;
        // either way nothing is freed early and everything is freed.
        let statistics = table.waitForAll(timeoutSeconds: teardownStallSeconds)
        #expect(statistics.isClean, "\(statistics)")
        #expect(inFlight.allSatisfy { !$0.complete() })
    }

    @Test("accounting returns to zero after random create/destroy/submit sequences", .shrinking(false))
    func randomAccounting() async {
        let operations = Gen.int(in: 0...5).array(of: 1...60)
        let sizes = Gen.int(in: 1...40).array(of: 60)
        await propertyCheck(count: 60, input: operations, sizes) { operations, sizes in
            let table = ContextTable<MembarrierRCU>(capacity: 3, requestBudget: 64)
            var live: [ContextID: Int] = [:]
            var requests: [ContextRequest<MembarrierRCU>] = []
            for (operation, size) in zip(operations, sizes) {
                switch operation {
                case 0, 1:
                    do throws(ContextError) {
                        let id = try table.create(maxRequests: size)
                        live[id] = size
                    } catch {
                        let expected: ContextError = live.count == 3 ? .tableFull : .budgetExhausted
                        if live.values.reduce(0, +) + size <= 64 && live.count < 3 {
                            Issue.record("create failed with \(error) though it fits")
                        } else if live.values.reduce(0, +) + size > 64 && error != .budgetExhausted {
                            Issue.record("expected budgetExhausted, got \(error)")
                        } else if live.values.reduce(0, +) + size <= 64 && error != expected {
                            Issue.record("expected \(expected), got \(error)")
                        }
                    }
                case 2:
                    if let id = live.keys.sorted(by: { $0.slot < $1.slot }).first {
                        try? table.destroy(id)
                        live[id] = nil
                    }
                case 3, 4:
                    if let id = live.keys.sorted(by: { $0.slot < $1.slot }).last,
                       let request = try? table.lease(id).submit() {
                        requests.append(request)
                    }
                default:
                    requests.popLast()?.complete()
                }
                if table.budgetInUse != live.values.reduce(0, +) {
                    Issue.record("budget \(table.budgetInUse), live contexts hold \(live.values.reduce(0, +))")
                    break
                }
            }
            let statistics = await table.shutdown(timeoutSeconds: teardownStallSeconds)
            #expect(statistics.isClean, "\(statistics)")
        }
    }
}
