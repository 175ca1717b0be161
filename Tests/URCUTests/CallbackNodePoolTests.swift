import Testing
import URCU
import URCUTesting

/// The pool that recycles call_rcu nodes keeps what it holds bounded: a
/// flood of callbacks must not pin its peak memory forever. The pool is
/// process-wide, so the test runs in a child process of its own.
@Suite("Callback node pool")
struct CallbackNodePoolTests {
    @Test("after each of repeated floods, the nodes alive stay within the pool's bound")
    func boundedAcrossFloods() async {
        await #expect(processExitsWith: .success) {
            CallbackNodePoolTests.flood(times: 20, callbacksEach: 50_000)
        }
    }

    /// Floods `times` times with `callbacksEach` callbacks, from two
    /// threads that end with the flood and from this one, which lives on.
    /// After each flood has run, the nodes left are those of the shared
    /// stack and of this thread's cache: at most `sharedLimit` each (a
    /// cache is one chain taken from the stack). Records the first flood
    /// after which more are alive.
    static func flood(times: Int, callbacksEach: Int) {
        let bound = 2 * Int(CallbackNodePool.sharedLimit)
        let perThread = callbacksEach / 3
        var alive: [Int] = []
        for flood in 1...times {
            let shortLived = (0..<2).map { _ in
                JoinableThread { for _ in 0..<perThread { MembarrierRCU.call {} } }
            }
            for _ in 0..<perThread { MembarrierRCU.call {} }
            shortLived.forEach { $0.join() }
            MembarrierRCU.barrier()
            alive.append(CallbackNodePool.nodesAlive)
            if alive[flood - 1] > bound {
                Issue.record("""
                    after flood \(flood), \(alive[flood - 1]) nodes are alive (at most \(bound) expected); \
                    after each flood: \(alive)
                    """)
                return
            }
        }
    }
}
