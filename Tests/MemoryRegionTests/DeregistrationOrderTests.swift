@testable import MemoryRegions
import Synchronization
import Testing
import TestSupport
import URCU
import URCUTesting

/// The deregistration's order against a reader parked where it matters,
/// with the fixed order and with each order `Spec/MemoryRegion.tla`
/// refutes (`NegativeControls.swift`). The refuted orders end the process
/// with a diagnostic, so they run as exit tests.
@Suite("Deregistration order")
struct DeregistrationOrderTests {
    /// A reader loads the region and is parked inside its read section,
    /// before its plain get; the region (atomic count: no percpu_ref grace
    /// period anywhere) is deregistered with `teardown` on a thread of its
    /// own. Once the deregistration has done what it can without the
    /// reader (returned, or reached its grace period), the reader reads the
    /// region's first byte, takes its get, checks the region and puts.
    /// Returns whether the reader found the region intact, and whether the
    /// deregistration succeeded.
    static func readerInsideDeregistration(
        teardown: some MemoryRegionTeardown
    ) throws -> (readerFoundRegionIntact: Bool, deregistered: Bool) {
        let parking = LookupParking()
        let observed = ObservedTeardown(inner: teardown)
        let table = MemoryRegionTable<MembarrierRCU>(
            capacity: 1, deregistrationTimeout: 10, teardown: observed, lookupLoaded: parking.hook())
        let region = try table.registerFilled(atomicCount: true)
        let key = region.key
        let intact = Latch(), deregistered = Latch(), returned = Latch()
        parking.arm()
        let reader = JoinableThread {
            guard let reference = table.lookup(key) else { return }
            if reference.holdsPattern && parking.byteRead == Int(regionPattern) { intact.open() }
        }
        parking.parked.wait()
        let deregistration = JoinableThread {
            if (try? table.deregister(region)) != nil { deregistered.open() }
            returned.open()
        }
        if teardown.synchronizes { observed.reachedGracePeriod.wait() } else { returned.wait() }
        parking.proceed.open()
        reader.join()
        deregistration.join()
        return (intact.isOpen, deregistered.isOpen)
    }

    @Test("the fixed order: a reader that loaded the region before the unpublish gets, reads and puts a valid region")
    func fixedOrderKeepsReaderSafe() throws {
        let outcome = try Self.readerInsideDeregistration(teardown: SynchronizeThenDrop())
        #expect(outcome.readerFoundRegionIntact)
        #expect(outcome.deregistered)
    }

    @Test("rdmavt's order (put before the grace period): the reader's get revives a count that reached zero")
    func putBeforeGracePeriodIsCaught() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try? DeregistrationOrderTests.readerInsideDeregistration(teardown: PutBeforeGracePeriod())
        }
        expectDiagnostic(result, "PercpuRef: get() on a ref whose count is zero (already released)")
    }

    @Test("no synchronize (trusting kill's grace period): the reader reads freed memory, and its get revives a count that reached zero")
    func noSynchronizeIsCaught() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try? DeregistrationOrderTests.readerInsideDeregistration(teardown: NoSynchronize())
        }
        if addressSanitizerIsActive {
            // The read inside the section, of memory the deregistration freed.
            let report = standardError(of: result)
            #expect(report.contains("heap-use-after-free"), "stderr was: \(report.suffix(2000))")
            // Freed by MemoryRegion.free() (as the mangled name shows it).
            #expect(report.contains("RegionC4freeyyF"), "the freed memory should be the region's: \(report.suffix(2000))")
        } else {
            expectDiagnostic(result, "PercpuRef: get() on a ref whose count is zero (already released)")
        }
    }

    /// A holder's put takes the count to zero after the deregistration's
    /// kill. With the shortcut, the release that put triggers is held at
    /// its start until the deregistration has returned (which only an order
    /// that does not wait for the release can do).
    /// Returns whether the deregistration succeeded.
    static func holderReleasesDuringDeregistration(shortcut: Bool) throws -> Bool {
        let killed = Latch(), releaseStarted = Latch(), returned = Latch(), deregistered = Latch()
        let fixed = ObservedTeardown(inner: SynchronizeThenDrop())
        let teardown: any MemoryRegionTeardown =
            shortcut
            ? IsZeroShortcut {
                killed.open()
                releaseStarted.wait()
            }
            : fixed
        let table = MemoryRegionTable<MembarrierRCU>(
            capacity: 1, deregistrationTimeout: 10, teardown: teardown,
            releaseStarted: {
                releaseStarted.open()
                if shortcut { returned.wait() }
            })
        let region = try table.registerFilled(atomicCount: true)
        guard let reference = table.lookup(region.key) else { throw MissingRegion() }
        let deregistration = JoinableThread {
            if (try? table.deregister(region)) != nil { deregistered.open() }
            returned.open()
        }
        // After the kill: the holder's put is the last.
        if shortcut { killed.wait() } else { fixed.droppedReferences.wait() }
        reference.put()
        deregistration.join()
        return deregistered.isOpen && region.phase == .freed && region.released.hasFinished
    }

    @Test("the fixed order frees only after the release the last put triggered has finished")
    func fixedOrderWaitsForRelease() throws {
        #expect(try Self.holderReleasesDuringDeregistration(shortcut: false))
    }

    @Test("the isZero shortcut frees while the release is still running")
    func isZeroShortcutIsCaught() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try? DeregistrationOrderTests.holderReleasesDuringDeregistration(shortcut: true)
        }
        expectDiagnostic(result, "MemoryRegionTable: the release of region lkey0.1 ran after the region was freed")
    }
}
