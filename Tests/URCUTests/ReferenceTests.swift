import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

/// `RCUReference`: following RCU-protected links inside one section.
@Suite("RCUReference")
struct ReferenceTests {
    final class Node: Sendable {
        let value: Int
        /// `2 * value + 1` until deinit writes 0: a reader that reaches a
        /// freed node sees it (while the memory is not reused, and always
        /// under ASan).
        let check: Atomic<Int>
        let next: RCUPointer<Node, MembarrierRCU>
        let freed: Counter
        init(value: Int, next: Node?, freed: Counter) {
            self.value = value
            check = Atomic(2 * value + 1)
            self.next = RCUPointer(next)
            self.freed = freed
        }
        deinit {
            check.store(0, ordering: .relaxed)
            freed.increment()
        }
    }

    @Test("readers walk a list whose nodes are replaced under them: every node they reach is whole")
    func walkWhileReplacing() {
        let freed = Counter()
        let length = 64
        var built: Node?
        for value in stride(from: length, through: 1, by: -1) { built = Node(value: value, next: built, freed: freed) }
        let head = RCUPointer<Node, MembarrierRCU>(built)
        built = nil
        let running = Atomic<Bool>(true), torn = Counter(), walks = Counter()
        let readers = (0..<2).map { _ in
            JoinableThread {
                while running.load(ordering: .relaxed) {
                    let (count, whole) = MembarrierRCU.read { section in
                        var count = 0, whole = true
                        var node = head.dereference(in: section)
                        while let current = node {
                            // Dwell on the node, so that its replacement
                            // (and, without a grace period, its free) can
                            // land while this section holds it.
                            for _ in 0..<16 {
                                whole = whole && current.object.check.load(ordering: .relaxed) == 2 * current.object.value + 1
                            }
                            count += 1
                            node = current.object.next.dereference(in: section)
                        }
                        return (count, whole)
                    }
                    if count != length || !whole { torn.increment() }
                    walks.increment()
                }
            }
        }
        // Replace the second node, again and again, with a copy: unlink it
        // by pointing the first node past it, and retire it.
        var replaced = 0
        while walks.value < 2_000 || replaced < 2_000 {
            // The only updater: its own accesses need no read section.
            let first = head.dereferenceProtected(by: true)!
            let second = first.next.dereferenceProtected(by: true)!
            first.next.assign(Node(value: second.value, next: second.next.dereferenceProtected(by: true), freed: freed))
            replaced += 1
        }
        running.store(false, ordering: .relaxed)
        for reader in readers { reader.join() }
        MembarrierRCU.barrier()
        #expect(torn.value == 0, "\(torn.value) of \(walks.value) walks met a freed or missing node")
        #expect(freed.value == replaced, "\(freed.value) nodes freed; \(replaced) were retired")
    }
}
