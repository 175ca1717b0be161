import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Dedicated and per-CPU callback workers.
@Suite("Callback workers", .serialized)
struct CallbackWorkerTests {
    @Test("a dedicated callback worker runs callbacks on its own thread", arguments: allFlavors)
    func callbackWorker(flavor: any LiburcuFlavor.Type) {
        func check<F: LiburcuFlavor>(_: F.Type) {
            let worker = CallbackWorker<F>()
            let workerThread = worker.thread
            let ranOnWorker = Atomic<Int>(0)
            F.withCallbackWorker(worker) {
                for _ in 0..<100 {
                    F.call {
                        if pthread_equal(pthread_self(), workerThread) != 0 {
                            ranOnWorker.wrappingAdd(1, ordering: .relaxed)
                        }
                        if !F.isCallbackThread { ranOnWorker.wrappingAdd(1_000_000, ordering: .relaxed) }
                    }
                }
            }
            F.barrier()
            #expect(ranOnWorker.load(ordering: .relaxed) == 100)
            worker.shutdown()
            #expect(!F.isCallbackThread)
        }
        check(flavor)
    }

    @Test("per-CPU callback workers run callbacks, and removing them loses none", arguments: allFlavors)
    func perCPUWorkers(flavor: any LiburcuFlavor.Type) {
        func check<F: LiburcuFlavor>(_: F.Type) {
            #expect(F.createPerCPUCallbackWorkers())
            #expect(F.hasCallbackWorker(forCPU: 0))
            let ran = Atomic<Int>(0)
            let gate = Latch()
            // Some run before the workers go away, some are still queued
            // when they do: those move to the default worker.
            runThreads(2) { _ in
                for _ in 0..<500 { F.call { gate.wait(); ran.wrappingAdd(1, ordering: .relaxed) } }
            }
            gate.open()
            F.removePerCPUCallbackWorkers()
            #expect(!F.hasCallbackWorker(forCPU: 0))
            F.barrier()
            #expect(ran.load(ordering: .relaxed) == 1_000)
        }
        check(flavor)
    }
}
