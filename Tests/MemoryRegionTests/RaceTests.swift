@testable import MemoryRegions
import Synchronization
import Testing
import TestSupport
import URCU
import URCUTesting

@Suite("Memory-region races")
struct RaceTests {
    /// Two reader threads look up the current region over and over (plain
    /// gets inside their read sections), check its memory and put, or hand
    /// the reference to the region; meanwhile a third registers a region,
    /// lets the readers find it, and deregisters it, round after round,
    /// with percpu and atomic counts. Every deregistration must succeed and
    /// no reader may see a freed region (the library's check stops the
    /// process, the pattern check counts poison).
    @Test("lookups taking plain gets race deregistration", arguments: allFlavors)
    func lookupsRaceDeregistration(flavor: any LiburcuFlavor.Type) {
        func check<F: RCUFlavor>(_: F.Type) {
            let rounds = 60
            let table = MemoryRegionTable<F>(capacity: 2)
            let current = Lock<MemoryRegionKey?>(nil)
            let done = Atomic<Bool>(false)
            let found = Counter(), kept = Counter(), damaged = Counter()
            let deregistered = Counter(), roundsFound = Counter()
            let readers = (0..<2).map { index in
                JoinableThread {
                    F.asReaderThread {
                        var lookups = index
                        while !done.load(ordering: .acquiring) {
                            if let key = current.withLock({ $0 }), let reference = table.lookup(key) {
                                found.increment()
                                if !reference.holdsPattern { damaged.increment() }
                                lookups += 1
                                if lookups.isMultiple(of: 5) {
                                    reference.keepInRegion()
                                    kept.increment()
                                }
                            }
                            F.betweenSections()
                        }
                    }
                }
            }
            let updater = JoinableThread {
                F.asReaderThread {
                    for round in 0..<rounds {
                        guard let region = try? table.registerFilled(atomicCount: round.isMultiple(of: 2)) else { continue }
                        let before = found.value
                        current.withLock { $0 = region.key }
                        // Let the readers reach it (bounded: a busy machine
                        // may not schedule them every round).
                        if eventually(seconds: 1, { found.value > before + 2 }) { roundsFound.increment() }
                        // The first failure ends the run (a timeout costs 5 s).
                        guard (try? table.deregister(region)) != nil, region.phase == .freed else { break }
                        deregistered.increment()
                    }
                    done.store(true, ordering: .releasing)
                }
            }
            updater.join()
            readers.forEach { $0.join() }
            #expect(deregistered.value == rounds)
            #expect(damaged.value == 0)
            #expect(roundsFound.value > rounds / 2, "the readers reached too few regions to race: \(roundsFound.value)")
            #expect(kept.value > 0)
        }
        check(flavor)
    }
}
