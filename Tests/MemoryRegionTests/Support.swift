@testable import MemoryRegions
import Synchronization
import URCU
import URCUTesting

/// The byte a test writes over a region it registers, so a reader can tell
/// valid memory from the free's poison.
let regionPattern: UInt8 = 0x5A

extension MemoryRegionTable {
    /// Registers a region and fills it with ``regionPattern``.
    func registerFilled(length: Int = 64, atomicCount: Bool = false) throws -> MemoryRegion<Flavor> {
        let region = try register(length: length, atomicCount: atomicCount)
        guard let reference = lookup(region.key) else { throw MissingRegion() }
        reference.withBytes { _ = $0.initializeMemory(as: UInt8.self, repeating: regionPattern) }
        return region
    }
}

struct MissingRegion: Error {}

extension MemoryRegionReference {
    /// Whether every byte of the region still holds ``regionPattern``.
    var holdsPattern: Bool {
        withBytes { bytes in bytes.allSatisfy { $0 == regionPattern } }
    }
}

/// Stops the first lookup that arms it inside its read section, between
/// the slot load and the get, until the test lets it go; the lookup then
/// reads the region's first byte there, as `rvt_lkey_ok` reads `mr->lkey`
/// and `mr->pd` before its get (straight from memory: AddressSanitizer
/// sees the read if the region was freed).
final class LookupParking: Sendable {
    private let armed = Atomic<Bool>(false)
    private let firstByte = Atomic<Int>(-1)
    let parked = Latch()
    let proceed = Latch()

    func arm() { armed.store(true, ordering: .releasing) }

    /// The byte the parked lookup read, or -1.
    var byteRead: Int { firstByte.load(ordering: .acquiring) }

    /// The table's `lookupLoaded` hook.
    func hook<Flavor>() -> @Sendable (MemoryRegion<Flavor>) -> Void {
        { region in
            guard self.armed.exchange(false, ordering: .acquiringAndReleasing) else { return }
            self.parked.open()
            self.proceed.wait()
            self.firstByte.store(Int(region.bytes.assumingMemoryBound(to: UInt8.self).pointee), ordering: .releasing)
        }
    }
}

/// Wraps a teardown and says how far it got: `reachedGracePeriod` opens
/// once its steps before the grace period have run (from then on, the
/// deregistration needs a parked reader to leave its section, if the order
/// synchronizes at all), `droppedReferences` once those after it have.
struct ObservedTeardown<Inner: MemoryRegionTeardown>: MemoryRegionTeardown {
    let inner: Inner
    let reachedGracePeriod = Latch()
    let droppedReferences = Latch()

    func beforeGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) {
        inner.beforeGracePeriod(steps)
        reachedGracePeriod.open()
    }

    var synchronizes: Bool { inner.synchronizes }

    func afterGracePeriod<Flavor>(_ steps: TeardownSteps<Flavor>) -> AfterTeardown {
        defer { droppedReferences.open() }
        return inner.afterGracePeriod(steps)
    }
}

extension MemoryRegionTable {
    /// Whether a lookup of `key` succeeds (dropping the reference at once;
    /// references are not copyable, so the testing macros cannot take them).
    func isReachable(_ key: MemoryRegionKey) -> Bool {
        switch lookup(key) {
        case .some: true
        case .none: false
        }
    }
}
