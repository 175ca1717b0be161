import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

/// `RCUPointerArray`: RCU slots in one shareable object.
@Suite("RCUPointerArray")
struct PointerArrayTests {
    /// Items alive, per test (tests run in parallel).
    final class Census: Sendable {
        let created = Counter(), freed = Counter()
        var alive: Int { created.value - freed.value }
    }

    final class Item: Sendable {
        let slot: Int
        let census: Census
        init(slot: Int, census: Census) {
            self.slot = slot
            self.census = census
            census.created.increment()
        }
        deinit { census.freed.increment() }
    }

    @Test("readers on threads see whole items while every slot is replaced; replaced items are freed after a grace period", arguments: allFlavors)
    func readersAndUpdater(flavor: any LiburcuFlavor.Type) async {
        func check<F: RCUFlavor>(_: F.Type) async -> (wrongItems: Int, aliveAfter: Int, reads: Int) {
            let census = Census()
            let slots = RCUPointerArray<Item, F>(count: 8)
            for index in 0..<slots.count { slots[index].assign(Item(slot: index, census: census)) }
            let running = Atomic<Bool>(true), wrong = Counter(), reads = Counter()
            let readers = (0..<2).map { _ in
                JoinableThread {
                    F.asReaderThread {
                        var index = 0
                        while running.load(ordering: .relaxed) {
                            let matches = F.read { section in
                                slots[index].dereference(in: section) { $0?.slot == index }
                            }
                            if !matches { wrong.increment() }
                            reads.increment()
                            index = (index + 1) % slots.count
                            F.betweenSections()
                        }
                    }
                }
            }
            // Replace until the readers have overlapped many replacements.
            var generation = 0
            while generation < 300 || reads.value < 1_000 {
                generation += 1
                let index = generation % slots.count
                slots[index].assign(Item(slot: index, census: census))
            }
            running.store(false, ordering: .relaxed)
            for reader in readers { reader.join() }
            await RCUQuiescence.wait()
            // Only the current item of each slot is left.
            let aliveAfter = census.alive
            withExtendedLifetime(slots) {}
            return (wrong.value, aliveAfter, reads.value)
        }
        let result = await check(flavor)
        #expect(result.wrongItems == 0, "readers saw an item in the wrong slot (freed or torn)")
        #expect(result.aliveAfter == 8, "\(result.aliveAfter) items alive; expected one per slot")
        #expect(result.reads > 0)
    }

    @Test("the array is a reference: tasks share it; destroying it releases what it holds")
    func sharedAndReleased() async {
        let census = Census()
        var slots: RCUPointerArray<Item, MembarrierRCU>? = RCUPointerArray(count: 4)
        let shared = slots!
        await withTaskGroup(of: Void.self) { group in
            for index in 0..<4 {
                group.addTask { shared[index].initialize(to: Item(slot: index, census: census)) }
            }
        }
        #expect(census.alive == 4)
        #expect(MembarrierRCU.read { section in (0..<4).allSatisfy { i in shared[i].dereference(in: section) { $0?.slot == i } } })
        slots = nil
        _ = consume shared
        #expect(census.alive == 0, "destroying the array did not release its values")
    }

    @Test("an index out of range is diagnosed")
    func outOfRange() async {
        expectDiagnostic(
            await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
                let slots = RCUPointerArray<Item, MembarrierRCU>(count: 2)
                slots[2].initialize(to: nil)
            },
            "RCUPointerArray: index 2 is out of range 0..<2")
    }
}
