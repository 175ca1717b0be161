import Dispatch
import PercpuRef
import Synchronization
import URCU

/// A region's name: its slot in the table and the generation that slot
/// had when the region was registered (the key's low bits in rdmavt's
/// `lkey`), so a stale key never reaches a later region in the same slot.
public struct MemoryRegionKey: Hashable, Sendable, CustomStringConvertible {
    /// The table slot the region is published in.
    public let slot: Int
    /// Which registration in that slot: a slot's regions get increasing
    /// generations.
    public let generation: UInt64

    public var description: String { "lkey\(slot).\(generation)" }
}

/// Why an operation of ``MemoryRegionTable`` failed.
public enum MemoryRegionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Every table slot is taken (`-ENOMEM` from `rvt_alloc_lkey`).
    case tableFull
    /// `length` is not positive.
    case invalidLength
    /// Deregistration waited `seconds` and the region still had
    /// `references` (`-EBUSY` from `rvt_check_refs`). Nothing was freed:
    /// the region stays unpublished and dead, and may be deregistered
    /// again once its holders have let go.
    case stillReferenced(key: MemoryRegionKey, references: Int, seconds: Double)

    public var description: String {
        switch self {
        case .tableFull: "memory region table full"
        case .invalidLength: "memory region length must be positive"
        case .stillReferenced(let key, let references, let seconds):
            "memory region \(key) still has \(references) references after \(seconds) s"
        }
    }
}

/// A registered memory region (rdmavt's `struct rvt_mregion`), as its owner
/// holds it: ``MemoryRegionTable/register(length:atomicCount:)`` returns it, and
/// ``MemoryRegionTable/deregister(_:)-1cmxe`` takes it back. Lookups reach it by
/// ``key`` and hold it through a ``MemoryRegionReference``.
///
/// The owner's handle keeps the object, not the memory: once deregistered,
/// the region's memory is freed, and every use of it through a reference is
/// a misuse the region diagnoses.
///
/// `@unchecked Sendable`: the memory it points to is the user's to share
/// (as registered memory is), and freed only once no reference is left.
public final class MemoryRegion<Flavor: RCUFlavor>: @unchecked Sendable {
    /// The key lookups find the region by.
    public let key: MemoryRegionKey
    /// The registered memory's size in bytes.
    public let length: Int

    /// The table the region was registered in.
    let table: ObjectIdentifier
    /// Counts the owner's reference (the initial one, dropped by the kill),
    /// the table's (taken when published), every lookup's, and the
    /// dependents' (`mr->refcount`).
    let references: PercpuRef<Flavor>
    let released: ReleaseSignal
    /// The region's memory; poisoned, then deallocated, by ``free()``.
    let bytes: UnsafeMutableRawPointer
    private let state: Lock<RegionState>
    private let freed = Atomic<Bool>(false)
    /// The table's recorder, if any (the conformance tests').
    let recorder: (any MemoryRegionRecorder)?

    /// Written into the whole region when it is freed, so that a read that
    /// gets past the checks (and AddressSanitizer) shows garbage no valid
    /// region holds.
    static var poison: UInt8 { 0xDE }

    init(
        table: ObjectIdentifier, key: MemoryRegionKey, length: Int, atomicCount: Bool,
        releaseStarted: (@Sendable () -> Void)?, recorder: (any MemoryRegionRecorder)?
    ) {
        self.table = table
        self.recorder = recorder
        self.key = key
        self.length = length
        bytes = .allocate(byteCount: length, alignment: 16)
        bytes.initializeMemory(as: UInt8.self, repeating: 0, count: length)
        state = Lock(RegionState())
        let released = ReleaseSignal()
        self.released = released
        var completingSwitch: (@Sendable (() -> Void) -> Void)?
        if recorder != nil {
            completingSwitch = { @Sendable finish in recorder.step(.switchConfirmed(key), finish) }
        }
        references = PercpuRef(options: atomicCount ? .startAtomic : [], completingSwitch: completingSwitch) {
            // The count reached zero (`__rvt_mregion_complete`): tell the
            // deregistration, which frees the region only after this.
            releaseStarted?()
            recorder.step(.released(key)) { released.signal(key: key) }
        }
    }

    deinit {
        if !freed.load(ordering: .relaxed) {
            // Never deregistered, or deregistration gave up: the memory goes
            // with the last handle.
            bytes.deallocate()
        }
    }

    // MARK: State

    /// Where the region is in its lifecycle (the spec's `regionState`).
    package enum Phase: Sendable, Equatable {
        case registered, deregistering, timedOut, freed
    }

    struct RegionState {
        var phase = Phase.registered
        /// References the region keeps for its dependents (rdmavt: the
        /// `rvt_sge`s of queue pairs), dropped by the deregistration.
        var dependents = 0
        var dependentsDropped = false
        /// The steps before the wait have run (a retry after a timeout
        /// only waits).
        var referencesDropped = false
    }

    package var phase: Phase { state.withLock { $0.phase } }

    /// The references kept for dependents, and whether the deregistration
    /// has dropped them (the spec's `dependents` and `cleaned`), for the
    /// conformance tests.
    package var dependentsState: (count: Int, dropped: Bool) {
        state.withLock { ($0.dependents, $0.dependentsDropped) }
    }

    var isFreed: Bool { freed.load(ordering: .acquiring) }

    /// Stops the process if the region has been freed: a holder reached it
    /// too late, which the deregistration's order must make impossible.
    func checkAlive(during operation: String) {
        if isFreed {
            rcuMisuse("MemoryRegionTable: \(operation) reached region \(key) after it was freed (use after free)")
        }
    }

    /// Claims the region for a deregistration; returns whether the steps
    /// before the wait still have to run (false on a retry after a timeout).
    func beginDeregistration() -> Bool {
        state.withLock { state in
            switch state.phase {
            case .registered, .timedOut:
                state.phase = .deregistering
                return !state.referencesDropped
            case .deregistering:
                rcuMisuse("MemoryRegionTable: deregister() of region \(key) while another deregistration of it is running")
            case .freed:
                rcuMisuse("MemoryRegionTable: deregister() of region \(key), which is already deregistered and freed")
            }
        }
    }

    func markReferencesDropped() {
        state.withLock { $0.referencesDropped = true }
    }

    func markTimedOut() {
        state.withLock { $0.phase = .timedOut }
    }

    // MARK: Dependents

    /// Keeps one reference for a dependent (rdmavt: a queue pair's
    /// `rvt_sge`), or puts it at once if the deregistration has already
    /// dropped the dependents' references.
    func adopt() {
        recorder.step(.adopted(key)) { keepOrPut() }
    }

    private func keepOrPut() {
        let keep = state.withLock { state -> Bool in
            if state.dependentsDropped { return false }
            state.dependents += 1
            return true
        }
        if !keep { references.put() }
    }

    /// Drops the references kept for dependents (`rvt_dereg_clean_qps`);
    /// later adoptions put their reference at once.
    func dropDependents() {
        let count = state.withLock { state -> Int in
            state.dependentsDropped = true
            defer { state.dependents = 0 }
            return state.dependents
        }
        if count > 0 { references.put(count: count) }
    }

    /// Drops a holder's reference (`rvt_put_mr`).
    func put() {
        recorder.step(.readerPut(key)) { references.put() }
    }

    // MARK: Memory

    /// Lends the region's memory to `body`.
    func withBytes<Result>(_ body: (UnsafeMutableRawBufferPointer) throws -> Result) rethrows -> Result {
        checkAlive(during: "a reference")
        return try body(UnsafeMutableRawBufferPointer(start: bytes, count: length))
    }

    /// Frees the region's memory (`rvt_deinit_mregion`, `kfree`): poisons
    /// it, marks the region freed, deallocates it.
    func free() {
        bytes.initializeMemory(as: UInt8.self, repeating: Self.poison, count: length)
        freed.store(true, ordering: .releasing)
        state.withLock { $0.phase = .freed }
        released.markRegionFreed()
        bytes.deallocate()
    }
}

/// The release's signal to the deregistration (rdmavt's `mr->comp`):
/// owned apart from the region so that the ref's release closure does not
/// keep the region alive.
final class ReleaseSignal: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let finished = Atomic<Bool>(false)
    private let regionFreed = Atomic<Bool>(false)

    /// Whether the release has finished: the count reached zero, and the
    /// deregistration may free the region.
    var hasFinished: Bool { finished.load(ordering: .acquiring) }

    /// The release (on the thread of the last put). A release after the
    /// free, or a second one, means the region was freed while a holder
    /// could still reach it.
    func signal(key: MemoryRegionKey) {
        if regionFreed.load(ordering: .acquiring) {
            rcuMisuse("MemoryRegionTable: the release of region \(key) ran after the region was freed (freed before its release finished)")
        }
        if finished.exchange(true, ordering: .acquiringAndReleasing) {
            rcuMisuse("MemoryRegionTable: region \(key) released twice (a lookup revived its count after it reached zero)")
        }
        semaphore.signal()
    }

    func markRegionFreed() { regionFreed.store(true, ordering: .releasing) }

    /// Waits up to `seconds` for the release; returns whether it came. A
    /// wait after it (a retry) returns at once.
    func wait(seconds: Double) -> Bool {
        hasFinished || semaphore.wait(timeout: .now() + seconds) == .success
    }
}
