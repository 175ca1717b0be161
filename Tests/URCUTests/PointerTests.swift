import Synchronization
import Testing
import URCU
import URCUTesting
import TestSupport

#if canImport(Glibc)
import Glibc
#endif

/// RCU-protected references and the value box, on every flavor with real
/// threads.
@Suite("Protected pointers")
struct PointerTests {
    final class Holder<F: RCUFlavor>: Sendable {
        let pointer: RCUPointer<Canary, F>
        init(_ value: Canary?) { pointer = RCUPointer(value) }
    }

    @Test("a reader keeps a retired object alive until it leaves its section", arguments: allFlavors)
    func retireAfterGracePeriod(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let holder = Holder<F>(Canary(1))
            let firstID = holder.pointer.dereferenceProtected(by: true)!.id
            let entered = Latch(), replaced = Latch(), violations = Atomic<Int>(0)
            let reader = JoinableThread {
                F.asReaderThread {
                    F.read { section in
                        holder.pointer.dereference(in: section) { canary in
                            entered.open()
                            replaced.wait()
                            // The updater has replaced and retired this
                            // object, and waited: it must still be whole.
                            for _ in 0..<50 {
                                if !(canary?.isIntact ?? false) || Canary.isFreed(firstID) {
                                    violations.wrappingAdd(1, ordering: .relaxed)
                                }
                                usleep(1_000)
                            }
                        }
                    }
                }
            }
            entered.wait()
            holder.pointer.assign(Canary(2))
            replaced.open()
            reader.join()
            F.barrier()
            #expect(violations.load(ordering: .relaxed) == 0, "retired object freed under a reader")
            #expect(Canary.isFreed(firstID), "retired object was never freed")
        }
        check(flavor)
    }

    @Test("concurrent readers never see a freed or half-initialised object", arguments: allFlavors)
    func stress(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let holder = Holder<F>(Canary(0))
            let stop = Latch(), violations = Atomic<Int>(0), reads = Atomic<Int>(0)
            let readers = (0..<2).map { _ in
                JoinableThread {
                    F.asReaderThread {
                        while !stop.isOpen {
                            for _ in 0..<100 {
                                let intact = F.read { section in
                                    holder.pointer.dereference(in: section) { $0?.isIntact ?? false }
                                }
                                if !intact { violations.wrappingAdd(1, ordering: .relaxed) }
                            }
                            reads.wrappingAdd(100, ordering: .relaxed)
                            F.betweenSections()
                        }
                    }
                }
            }
            // At least half a second, 200 updates and 2,000 reads (counts,
            // so that a loaded machine makes the run longer, not thinner),
            // at most a minute.
            let start = monotonicSeconds()
            var updates = 0
            while monotonicSeconds() - start < 60,
                  monotonicSeconds() - start < 0.5 || updates < 200 || reads.load(ordering: .relaxed) < 2_000 {
                updates += 1
                switch updates % 4 {
                case 0: holder.pointer.assign(Canary(updates))
                case 1: _ = holder.pointer.exchange(Canary(updates))
                case 2:
                    let current = holder.pointer.dereferenceProtected(by: true)
                    holder.pointer.compareExchange(expected: current, desired: Canary(updates))
                default:
                    if updates % 64 == 3 { F.synchronize() }
                    holder.pointer.assign(Canary(updates))
                }
            }
            stop.open()
            readers.forEach { $0.join() }
            F.barrier()
            #expect(violations.load(ordering: .relaxed) == 0)
            #expect(reads.load(ordering: .relaxed) > 1_000)
            #expect(updates >= 200)
        }
        check(flavor)
    }

    @Test("the accessor set: access, initialize, exchange, compareExchange, dereferenceProtected")
    func accessors() {
        let a = Canary(1), b = Canary(2), c = Canary(3)
        let pointer = RCUPointer<Canary, MembarrierRCU>()
        #expect(pointer.access() == nil)
        pointer.initialize(to: a)
        #expect(pointer.access() == ObjectIdentifier(a))
        #expect(pointer.dereferenceProtected(by: true) === a)

        let old = pointer.exchange(b)
        #expect(old === a)
        #expect(pointer.access() == ObjectIdentifier(b))

        let staleExchanged = pointer.compareExchange(expected: a, desired: c)
        #expect(!staleExchanged, "stale expected must fail")
        #expect(pointer.access() == ObjectIdentifier(b))
        let exchangedB = pointer.compareExchange(expected: b, desired: c)
        #expect(exchangedB)
        #expect(pointer.access() == ObjectIdentifier(c))
        let exchangedC = pointer.compareExchange(expected: c, desired: nil)
        #expect(exchangedC)
        #expect(pointer.access() == nil)

        MembarrierRCU.read { section in
            pointer.dereference(in: section) { #expect($0 == nil) }
        }
        pointer.assign(a)
        let seen = MembarrierRCU.read { section in pointer.dereference(in: section) { $0?.value } }
        #expect(seen == 1)
    }

    @Test("ownership: every published object is released exactly once")
    func ownership() {
        weak var weakA: Canary?
        weak var weakB: Canary?
        do {
            let pointer = RCUPointer<Canary, MembarrierRCU>()
            do {
                let a = Canary(1), b = Canary(2)
                weakA = a
                weakB = b
                pointer.assign(a)
                pointer.assign(b)
                // A failed compare-exchange must not leak its desired value.
                pointer.compareExchange(expected: a, desired: Canary(3))
            }
            MembarrierRCU.barrier()
            #expect(weakA == nil, "retired object leaked")
            #expect(weakB != nil, "published object released early")
        }
        // Destroying the pointer releases its current value.
        #expect(weakB == nil, "current value leaked by the pointer's deinit")
    }

    @Test("an escaped value stays valid after the section, retained")
    func escape() {
        let pointer = RCUPointer<Canary, MembarrierRCU>(Canary(7))
        let escaped = MembarrierRCU.read { section in pointer.dereference(in: section) { $0 } }
        pointer.assign(nil)
        MembarrierRCU.barrier()
        #expect(escaped?.isIntact == true)
        #expect(escaped?.value == 7)
    }
}

@Suite("RCUBox")
struct BoxTests {
    struct Pair: Sendable, Equatable {
        var a: Int
        var b: Int
    }

    @Test("readers always see a consistent value while writers update", arguments: allFlavors)
    func consistency(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let box = RCUBox<Pair, F>(Pair(a: 0, b: 0))
            let stop = Latch(), torn = Atomic<Int>(0)
            let readers = (0..<2).map { _ in
                JoinableThread {
                    F.asReaderThread {
                        while !stop.isOpen {
                            for _ in 0..<100 where box.read({ $0.a != $0.b }) {
                                torn.wrappingAdd(1, ordering: .relaxed)
                            }
                            F.betweenSections()
                        }
                    }
                }
            }
            runThreads(2) { _ in
                for _ in 0..<2_000 { box.update { $0.a += 1; $0.b += 1 } }
            }
            stop.open()
            readers.forEach { $0.join() }
            #expect(torn.load(ordering: .relaxed) == 0)
            // Updates are serialised: none is lost.
            #expect(F.asReaderThread { box.value } == Pair(a: 4_000, b: 4_000))
        }
        check(flavor)
    }

    enum Refusal: Error { case no }

    @Test("a throwing update publishes nothing")
    func throwingUpdate() {
        let box = RCUBox<Pair, MembarrierRCU>(Pair(a: 1, b: 1))
        #expect(throws: Refusal.self) {
            try box.update { (pair) throws(Refusal) in pair.a = 99; throw .no }
        }
        #expect(box.value == Pair(a: 1, b: 1))
        let returned = box.update { pair -> Int in pair.a = 5; return pair.a * 10 }
        #expect(returned == 50)
        #expect(box.read { $0.a } == 5)
    }
}
