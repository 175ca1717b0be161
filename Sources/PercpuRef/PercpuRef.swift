import CURCU
import Synchronization
import URCU

/// A reference count that every thread can hit without contention, until
/// it is killed (the Linux kernel's `percpu_ref`).
///
/// In percpu mode, ``get(count:)`` and ``put(count:)`` change a counter that belongs to
/// the calling thread: no shared cache line, no atomic read-modify-write.
/// ``kill(confirm:)`` switches the ref to atomic mode (a single shared count) and
/// drops the initial reference; `release` runs when that count reaches zero.
///
/// The switch from percpu to atomic mode waits for a grace period of
/// `Flavor`, so that no thread is still adding to a per-thread counter when
/// they are summed. **That grace period is internal: nothing else may rely
/// on it.** There is no grace period between the last ``put(count:)`` and
/// `release`, and none at all when the ref is already in atomic mode. An
/// object that RCU readers can still reach must not be freed from
/// `release`: free it after an explicit grace period of the readers'
/// flavor, from a context that may block (the "double bounce", which fixed
/// the 2018 fs/aio bug):
///
/// ```swift
/// let users = PercpuRef<MembarrierRCU> {
///     MembarrierRCU.afterGracePeriod(on: cleanupQueue) { context.free() }
/// }
/// ```
///
/// With `QuiescentStateRCU` as `Flavor`, every ``get(count:)`` and ``put(count:)`` is a
/// QSBR read section: every thread that touches the ref must be registered
/// and online (checked in every build, like all QSBR read sections, unless
/// the trait `QSBRReadSideChecks` is off). With the trait off, the first
/// 256 QSBR refs count in the calling thread's counter block, found from
/// the thread pointer (`CounterBlocks`), which the thread registers when it
/// registers with QSBR through `QuiescentStateRCU` or runs a callback: a
/// thread registered with liburcu from C code, and not through
/// `QuiescentStateRCU`, must not count on a QSBR ref then.
///
/// Misuse (killing twice, putting below zero, resurrecting a live ref,
/// reinitialising a ref in use, switching to percpu mode without
/// ``PercpuRefOptions/allowReinit``, any use after ``exit()``) stops the process with
/// a diagnostic that names it, where the kernel would warn.
public final class PercpuRef<Flavor: RCUFlavor>: @unchecked Sendable {
    /// How a ref starts: ``PercpuRefOptions``.
    public typealias Options = PercpuRefOptions

    // The flags of `offsetAndMode`, in the low bits of the ref's offset in
    // the counter areas (the kernel's percpu_count_ptr): percpu mode is the
    // three mode flags clear.
    @usableFromInline static var atomicMode: UInt { 1 }
    @usableFromInline static var deadFlag: UInt { 2 }
    @usableFromInline static var exitedFlag: UInt { 4 }
    @usableFromInline static var modeFlags: UInt { atomicMode | deadFlag | exitedFlag }
    /// The ref has no offset (every one is taken): in percpu mode it counts
    /// on the shared count, which holds the bias, so that is correct, only
    /// slower. Not a mode flag: with it alone, the ref is in percpu mode.
    @usableFromInline static var noCounterFlag: UInt { 8 }
    /// All clear: percpu mode, and the word is the offset to count at. get
    /// and put test them in one instruction (measured: a second test for
    /// `noCounterFlag` made a qsbr get+put 25% slower).
    @usableFromInline static var fastPathFlags: UInt { modeFlags | noCounterFlag }
    /// All clear: percpu mode, and an offset in the calling thread's
    /// counter block (``CounterBlocks``): the mode flags and the bits of
    /// every offset at or beyond `CounterBlocks.bytes` (a power of two;
    /// offsets are multiples of the stride, which the flags sit below).
    @usableFromInline static var blockFastPathMask: UInt { ~(CounterBlocks.bytes - CounterAreas.stride) }

    /// Added to the shared count while in percpu mode, so that puts that
    /// reach it during a switch (after the mode flips, before the per-thread
    /// counters are summed) cannot take it to zero. The sum removes it.
    @usableFromInline static var bias: Int { 1 << 62 }

    /// `offset` with the mode flags. get, tryGet, tryGetLive and put load
    /// it inside a read section of `Flavor`, which is what lets the switch
    /// trust the per-thread counters after a grace period; it changes only
    /// under `control`'s lock. One load gives both the mode and where to
    /// count.
    @usableFromInline let offsetAndMode: Atomic<UInt>
    @usableFromInline let count: Atomic<Int>
    /// Where this ref's counters are in every thread's area
    /// (``CounterAreas``), in bytes; nil if none was left.
    let offset: UInt?
    @usableFromInline let release: @Sendable () -> Void
    /// Times `release` has run since the ref was created or reinitialised
    /// (the spec's `releases`).
    @usableFromInline let releases = Atomic<Int>(0)
    /// Wraps the end of each switch to atomic mode; see
    /// ``init(options:completingSwitch:release:)``.
    private let completingSwitch: (@Sendable (() -> Void) -> Void)?

    private struct Control {
        var forceAtomic: Bool
        var allowReinit: Bool
        /// A switch to atomic mode is waiting for its grace period. Requests
        /// that arrive meanwhile are settled when it completes.
        var switchInFlight = false
        var confirmations: [@Sendable () -> Void] = []
    }
    private let control: Lock<Control>

    /// Creates a ref holding one reference (none with
    /// ``PercpuRefOptions/startDead``).
    ///
    /// - Parameter options: how the ref starts; by default alive and in
    ///   percpu mode, without ``PercpuRefOptions/allowReinit``.
    /// - Parameter release: runs once the count reaches zero in atomic mode
    ///   (normally after ``kill(confirm:)``), on the thread of the last ``put(count:)`` or
    ///   of the mode switch, outside any read section. **No grace period
    ///   separates it from that put**: readers that found the object under
    ///   RCU may still be using it. Free such an object only after an
    ///   explicit grace period of the readers' flavor, from a context that
    ///   may block (`Flavor.afterGracePeriod(on:execute:)`).
    ///
    /// The object that owns the ref usually owns what `release` frees.
    /// Capturing that object in `release` would be a retain cycle (the
    /// object holds the ref, the ref holds `release`): capture what is to be
    /// freed instead, held in an object of its own that the owner shares
    /// (its buffers, its socket), as `Examples/ConnectionTable` does:
    ///
    /// ```swift
    /// final class Connection: Sendable {
    ///     let resources = Resources()
    ///     let users: PercpuRef<MembarrierRCU>
    ///     init(cleanup: DispatchQueue) {
    ///         users = PercpuRef { [resources] in
    ///             MembarrierRCU.afterGracePeriod(on: cleanup) { resources.close() }
    ///         }
    ///     }
    /// }
    /// ```
    public convenience init(options: Options = [], release: @escaping @Sendable () -> Void) {
        self.init(options: options, completingSwitch: nil, release: release)
    }

    /// Creates a ref whose switch callbacks run inside `completingSwitch`:
    /// it is handed the end of each switch to atomic mode (the sum, and the
    /// release if the count is zero) and must run it once, synchronously.
    /// For recording the switch as one step (the conformance tests).
    package init(
        options: Options, completingSwitch: (@Sendable (() -> Void) -> Void)?,
        release: @escaping @Sendable () -> Void
    ) {
        self.completingSwitch = completingSwitch
        let startsAtomic = !options.isDisjoint(with: [.startAtomic, .startDead])
        var startCount = startsAtomic ? 0 : Self.bias
        var startMode: UInt = startsAtomic ? Self.atomicMode : 0
        if options.contains(.startDead) {
            startMode |= Self.deadFlag
        } else {
            startCount += 1
        }
        count = Atomic(startCount)
        offset = CounterAreas.allocateOffset()
        // The flags fit below the offset, a multiple of 16.
        offsetAndMode = Atomic((offset ?? Self.noCounterFlag) | startMode)
        self.release = release
        control = Lock(Control(
            forceAtomic: options.contains(.startAtomic),
            allowReinit: startsAtomic || options.contains(.allowReinit)))
    }

    deinit {
        // No thread counts on a ref that is gone (a get or put holds it).
        if let offset { CounterAreas.freeOffset(offset) }
    }

    // MARK: References

    /// Takes `count` references (`percpu_ref_get_many`). The caller must
    /// already hold one, or know the ref is not dead.
    @inlinable
    @inline(__always)
    public func get(count n: Int = 1) {
        if _slowPath(n <= 0) { countNotPositive(n) }
        if countedInBlock(n) { return }
        leafRead { area in
            let word = offsetAndMode.load(ordering: .acquiring)
            // Two tests, not one `&&`: that compiled to setcc and a third
            // test (measured: 2x the ideal instead of 1.3x).
            if _fastPath(word & Self.fastPathFlags == 0) {
                if _fastPath(area != 0) {
                    CounterAreas.counters(in: area, atOffset: word).pointee.count(n)
                    return
                }
            }
            _ = countOffFastPath(n, word: word)
        }
    }

    /// Takes `count` references unless the count is zero
    /// (`percpu_ref_tryget_many`). Succeeds on a dying ref that is still
    /// referenced.
    @inlinable
    public func tryGet(count n: Int = 1) -> Bool {
        if _slowPath(n <= 0) { countNotPositive(n) }
        return Flavor._leafRead {
            let word = offsetAndMode.load(ordering: .acquiring)
            if _fastPath(word & Self.modeFlags == 0) {
                countInPercpuMode(n, word: word)
                return true
            }
            checkNotExited("tryGet", word: word)
            return addUnlessZero(n)
        }
    }

    /// Takes `count` references unless the ref has been killed
    /// (`percpu_ref_tryget_live_many`): the lookup primitive for objects
    /// found under RCU, whose count may already be on its way to zero.
    @inlinable
    public func tryGetLive(count n: Int = 1) -> Bool {
        if _slowPath(n <= 0) { countNotPositive(n) }
        return Flavor._leafRead {
            let word = offsetAndMode.load(ordering: .acquiring)
            if _fastPath(word & Self.modeFlags == 0) {
                countInPercpuMode(n, word: word)
                return true
            }
            checkNotExited("tryGetLive", word: word)
            return word & Self.deadFlag == 0 && addUnlessZero(n)
        }
    }

    /// Drops `count` references (`percpu_ref_put_many`); runs `release` if
    /// they were the last.
    @inlinable
    @inline(__always)
    public func put(count n: Int = 1) {
        if _slowPath(n <= 0) { countNotPositive(n) }
        if countedInBlock(-n) { return }
        let reachedZero = leafRead { area -> Bool in
            let word = offsetAndMode.load(ordering: .acquiring)
            if _fastPath(word & Self.fastPathFlags == 0) {
                if _fastPath(area != 0) {
                    CounterAreas.counters(in: area, atOffset: word).pointee.count(-n)
                    return false
                }
            }
            return countOffFastPath(-n, word: word)
        }
        if _slowPath(reachedZero) { runRelease() }
    }

    /// The fast path of a QSBR ref with QSBR's read-side checks compiled
    /// out: if the ref is in percpu mode with an offset in the calling
    /// thread's counter block, counts `delta` there and returns true. Two
    /// memory accesses and the counter's, no per-thread address to load:
    /// the block's place is fixed from the thread pointer, and the thread
    /// registered it before it could count (``CounterBlocks``). With the
    /// checks, the online check loads the thread's area anyway, and the
    /// ref counts there (``leafRead(_:)``).
    @inlinable
    @inline(__always)
    func countedInBlock(_ delta: Int) -> Bool {
        #if !QSBRReadSideChecks
        if Flavor.self == QuiescentStateRCU.self {
            return Flavor._leafRead {
                let word = offsetAndMode.load(ordering: .acquiring)
                guard _fastPath(word & Self.blockFastPathMask == 0) else { return false }
                countInCallingThreadBlock(delta, offset: word)
                return true
            }
        }
        #endif
        return false
    }

    /// Counts `delta` on the calling thread's counters at `offset` in its
    /// counter block: the fast path's count with the checks compiled out
    /// (the tests call it in every build).
    @inlinable
    @inline(__always)
    package func countInCallingThreadBlock(_ delta: Int, offset: UInt) {
        ThreadCounters.at(CounterBlocks.callingThreadBlock, offset: offset).pointee.count(delta)
    }

    /// Runs `body` in the read section of a get or put, with the calling
    /// thread's area, or zero if `body` must take ``countOffFastPath(_:word:)``.
    /// With QSBR's read-side checks, the area comes from the thread's QSBR
    /// online area, zero unless the thread is online (``CounterAreas``):
    /// one load and one test serve the area and the online check, and
    /// ``countOffFastPath(_:word:)`` makes the check on every other path.
    @inlinable
    @inline(__always)
    func leafRead<Result>(_ body: (_ area: UInt) -> Result) -> Result {
        #if QSBRReadSideChecks
        if Flavor.self == QuiescentStateRCU.self {
            return QuiescentStateRCU._leafReadCheckedByBody { body(CounterAreas.callingThreadQSBROnlineArea) }
        }
        #endif
        return Flavor._leafRead { body(CounterAreas.callingThreadArea) }
    }

    /// A get (`delta` positive) or put (`delta` negative) that the fast
    /// path does not take: not in percpu mode, no counter, or no area in
    /// hand (the thread's first count; on QSBR with its checks, the first
    /// since the thread went online, or a thread not online, which this
    /// diagnoses). Returns whether a put took the count to zero.
    @usableFromInline
    func countOffFastPath(_ delta: Int, word: UInt) -> Bool {
        #if QSBRReadSideChecks
        let checksOnline = Flavor.self == QuiescentStateRCU.self
        if checksOnline { QuiescentStateRCU._requireOnline() }
        #endif
        if word & Self.modeFlags != 0 {
            guard delta < 0 else {
                addToSharedCount(delta, word: word)
                return false
            }
            return subtractFromSharedCount(-delta, word: word)
        }
        countInPercpuMode(delta, word: word)
        #if QSBRReadSideChecks
        // The thread is online (checked above) and has its area now: its
        // next gets and puts take the fast path, until it goes offline.
        if checksOnline { CounterAreas.rememberCallingThreadOnline() }
        #endif
        return false
    }

    @usableFromInline
    func runRelease() {
        releases.wrappingAdd(1, ordering: .relaxed)
        release()
    }

    /// Counts `delta` gets (positive) or `-delta` puts (negative) in
    /// percpu mode, on the calling thread's counters at `offset` in its
    /// area. Each caller's sign is known, so once inlined the test of it
    /// folds away.
    @inlinable
    @inline(__always)
    func countInThread(_ delta: Int, offset: UInt) {
        let area = CounterAreas.callingThreadArea
        if _fastPath(area != 0) {
            CounterAreas.counters(in: area, atOffset: offset).pointee.count(delta)
        } else {
            countInNewArea(delta, offset: offset)
        }
    }

    /// Counts `delta` in percpu mode, given the ref's `word`: on the
    /// calling thread's counters, or on the shared count if the ref has
    /// none (it holds the bias in percpu mode, so that is correct).
    @inlinable
    @inline(__always)
    func countInPercpuMode(_ delta: Int, word: UInt) {
        if _fastPath(word & Self.noCounterFlag == 0) {
            countInThread(delta, offset: word)
        } else {
            count.wrappingAdd(delta, ordering: .relaxed)
        }
    }

    /// A thread's first count: it takes an area.
    @usableFromInline
    func countInNewArea(_ delta: Int, offset: UInt) {
        CounterAreas.counters(in: CounterAreas.assignedArea, atOffset: offset).pointee.count(delta)
    }

    /// `get` in atomic mode. A count of zero means the ref was released
    /// (or starts dead): a get would revive it, and run `release` twice.
    @usableFromInline
    func addToSharedCount(_ n: Int, word: UInt) {
        checkNotExited("get", word: word)
        if count.wrappingAdd(n, ordering: .relaxed).oldValue == 0 {
            rcuMisuse("PercpuRef: get() on a ref whose count is zero (already released); use tryGet() or reinit()")
        }
    }

    @usableFromInline
    func addUnlessZero(_ n: Int) -> Bool {
        var current = count.load(ordering: .relaxed)
        while current != 0 {
            let (exchanged, original) = count.weakCompareExchange(
                expected: current, desired: current &+ n, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    @usableFromInline
    func subtractFromSharedCount(_ n: Int, word: UInt) -> Bool {
        checkNotExited("put", word: word)
        let remaining = count.wrappingSubtract(n, ordering: .acquiringAndReleasing).newValue
        if _slowPath(remaining < 0) {
            rcuMisuse("PercpuRef: put() below zero (count \(remaining)): more puts than gets")
        }
        return remaining == 0
    }

    @usableFromInline
    func countNotPositive(_ n: Int) -> Never {
        rcuMisuse("PercpuRef: reference count operation with count \(n); counts must be positive")
    }

    @usableFromInline
    func checkNotExited(_ operation: String, word: UInt) {
        if _slowPath(word & Self.exitedFlag != 0) {
            rcuMisuse("PercpuRef: \(operation)() after exit()")
        }
    }

    // MARK: State

    /// Whether the count is zero (`percpu_ref_is_zero`). Always false in
    /// percpu mode, where the count is not known without a switch.
    public var isZero: Bool {
        offsetAndMode.load(ordering: .acquiring) & Self.atomicMode != 0 && count.load(ordering: .acquiring) == 0
    }

    /// Whether the ref has been killed (`percpu_ref_is_dying`).
    public var isDying: Bool { offsetAndMode.load(ordering: .acquiring) & Self.deadFlag != 0 }

    /// Whether the ref is in percpu mode.
    public var isPercpu: Bool { offsetAndMode.load(ordering: .acquiring) & Self.modeFlags == 0 }

    /// The ref as `Spec/RefCount.tla` sees it: the refinement mapping
    /// from this representation to the spec's record. Exact only while no
    /// other thread uses the ref.
    package var abstractState: AbstractRefState {
        control.withLock { control in
            let word = offsetAndMode.load(ordering: .acquiring)
            var total = count.load(ordering: .acquiring)
            let mode: AbstractRefState.Mode
            if word & Self.atomicMode == 0 {
                mode = .percpu
            } else if control.switchInFlight {
                mode = .switching
            } else {
                mode = .atomic
            }
            if mode != .atomic {
                // The bias, and in a switch its own reference, are not
                // references anyone holds; the per-thread counters are.
                total -= Self.bias + (mode == .switching ? 1 : 0)
                total &+= perThreadSum
            }
            return AbstractRefState(
                count: total, mode: mode, isDead: word & Self.deadFlag != 0,
                forceAtomic: control.forceAtomic, releases: releases.load(ordering: .relaxed))
        }
    }

    // MARK: Kill and mode switches

    /// Kills the ref: ``tryGetLive(count:)`` fails from now on, the ref switches
    /// to atomic mode, and the initial reference is dropped
    /// (`percpu_ref_kill_and_confirm`).
    ///
    /// The grace period this waits for is internal to the mode switch: it
    /// is not between the last ``put(count:)`` and `release`, it is of the ref's
    /// flavor (which may not be the flavor of the object's readers), and
    /// there is none at all if the ref is already in atomic mode. Never
    /// rely on it to protect readers; see the type's documentation.
    ///
    /// - Parameter confirm: runs once the switch is complete: after a grace
    ///   period of `Flavor`, on a callback thread (it must not block), or at
    ///   once on the calling thread if the ref was already in atomic mode.
    ///   Every ``tryGetLive(count:)`` that starts after it runs fails.
    public func kill(confirm: (@Sendable () -> Void)? = nil) {
        let ready = control.withLock { control -> [@Sendable () -> Void] in
            let current = offsetAndMode.load(ordering: .relaxed)
            checkNotExited("kill", word: current)
            if current & Self.deadFlag != 0 { rcuMisuse("PercpuRef: kill() called on a ref that is already dead (killed twice?)") }
            offsetAndMode.store(current | Self.deadFlag, ordering: .releasing)
            return settleMode(&control, confirm: confirm)
        }
        ready.forEach { $0() }
        put()
    }

    /// Switches to atomic mode and keeps the ref there until
    /// ``switchToPercpu()`` (`percpu_ref_switch_to_atomic`).
    ///
    /// - Parameter confirm: runs once the ref is in atomic mode.
    public func switchToAtomic(confirm: (@Sendable () -> Void)? = nil) {
        let ready = control.withLock { control -> [@Sendable () -> Void] in
            checkNotExited("switchToAtomic", word: offsetAndMode.load(ordering: .relaxed))
            control.forceAtomic = true
            return settleMode(&control, confirm: confirm)
        }
        ready.forEach { $0() }
    }

    /// Switches to atomic mode and waits until the switch is complete
    /// (`percpu_ref_switch_to_atomic_sync`). Must not be called inside a
    /// read section of `Flavor` or from one of its callbacks. Blocks the
    /// calling thread (an online QSBR caller goes offline meanwhile): async
    /// code uses `await switchToAtomicSync()`.
    @available(*, noasync, message: "blocks the thread; use 'await switchToAtomicSync()' in async code")
    public func switchToAtomicSync() {
        switchToAtomic()
        if control.withLock({ $0.switchInFlight }) { Flavor.barrier() }
    }

    /// ``switchToAtomicSync()`` for async code: suspends until the switch
    /// is complete.
    public func switchToAtomicSync() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            switchToAtomic { continuation.resume() }
        }
    }

    /// Lets the ref return to percpu mode once it is alive and no switch is
    /// pending (`percpu_ref_switch_to_percpu`). Requires
    /// ``PercpuRefOptions/allowReinit``.
    public func switchToPercpu() {
        let ready = control.withLock { control -> [@Sendable () -> Void] in
            checkNotExited("switchToPercpu", word: offsetAndMode.load(ordering: .relaxed))
            control.forceAtomic = false
            return settleMode(&control, confirm: nil)
        }
        ready.forEach { $0() }
    }

    /// Brings a killed ref back to life with one reference
    /// (`percpu_ref_resurrect`); the count need not be zero.
    public func resurrect() {
        let ready = control.withLock { control -> [@Sendable () -> Void] in
            let current = offsetAndMode.load(ordering: .relaxed)
            checkNotExited("resurrect", word: current)
            if current & Self.deadFlag == 0 { rcuMisuse("PercpuRef: resurrect() on a ref that is not dead") }
            // Still in atomic mode: the new reference goes to the shared count.
            count.wrappingAdd(1, ordering: .relaxed)
            offsetAndMode.store(current & ~Self.deadFlag, ordering: .releasing)
            return settleMode(&control, confirm: nil)
        }
        ready.forEach { $0() }
    }

    /// Reinitialises a released ref to one reference, in the mode it was
    /// created for (`percpu_ref_reinit`).
    public func reinit() {
        if !isZero {
            rcuMisuse("PercpuRef: reinit() on a ref whose count is not zero (it is still in use)")
        }
        releases.store(0, ordering: .relaxed)
        resurrect()
    }

    /// Retires the ref (`percpu_ref_exit`): any later use is a misuse.
    /// ``isZero`` and ``isDying`` keep answering (``isDying`` is true).
    ///
    /// Optional: unlike the kernel's, a ref frees its counters itself when
    /// it is destroyed. Call it to have any later use diagnosed.
    public func exit() {
        control.withLock { control in
            if control.switchInFlight { rcuMisuse("PercpuRef: exit() while a switch to atomic mode is in flight") }
            // Like the kernel's __PERCPU_REF_ATOMIC_DEAD: dying from now on.
            offsetAndMode.store(
                offsetAndMode.load(ordering: .relaxed) | Self.modeFlags,
                ordering: .releasing)
        }
    }

    /// Moves the ref to the mode its flags ask for (`__percpu_ref_switch_mode`).
    /// Runs under the control lock; returns what to do once the lock is
    /// released (confirmations, or queueing the switch's completion).
    private func settleMode(_ control: inout Control, confirm: (@Sendable () -> Void)?) -> [@Sendable () -> Void] {
        if control.forceAtomic || offsetAndMode.load(ordering: .relaxed) & Self.deadFlag != 0 {
            return startSwitchToAtomic(&control, confirm: confirm)
        }
        switchToPercpuNow(&control)
        return confirm.map { [$0] } ?? []
    }

    private func startSwitchToAtomic(_ control: inout Control, confirm: (@Sendable () -> Void)?) -> [@Sendable () -> Void] {
        let current = offsetAndMode.load(ordering: .relaxed)
        if current & Self.atomicMode != 0 {
            // Already atomic, or on the way: confirm now, or with the switch
            // in flight.
            guard control.switchInFlight else { return confirm.map { [$0] } ?? [] }
            if let confirm { control.confirmations.append(confirm) }
            return []
        }
        offsetAndMode.store(current | Self.atomicMode, ordering: .releasing)
        control.switchInFlight = true
        control.confirmations = confirm.map { [$0] } ?? []
        // Hold the ref across the grace period, so the sum cannot find a
        // count of zero; the callback drops this reference last.
        count.wrappingAdd(1, ordering: .relaxed)
        return [{ self.queueSwitchCompletion() }]
    }

    /// Queues the end of a switch to atomic mode, after a grace period.
    /// Runs once the control lock is released (nothing is called out under
    /// it), and never waits: a kill does not block, like the kernel's.
    private func queueSwitchCompletion() {
        Flavor._callWithoutBackPressure {
            if let completingSwitch = self.completingSwitch {
                completingSwitch { self.finishSwitchToAtomic() }
            } else {
                self.finishSwitchToAtomic()
            }
        }
    }

    /// After the grace period: no section that saw percpu mode is still
    /// running, so the per-thread counters are final.
    private func finishSwitchToAtomic() {
        let confirmations = control.withLock { control -> [@Sendable () -> Void] in
            // Collected and zeroed in one step under the areas' lock: a
            // thread exiting meanwhile folds its counters before or after,
            // never both. Under the control lock too, with the end of the
            // switch, so that ``abstractState`` (which reads the count and
            // the counters under it) never sees the counters zeroed but the
            // switch still in flight: it reported a held reference as none.
            let perThread = offset.map(CounterAreas.collect) ?? 0
            let total = count.wrappingAdd(perThread &- Self.bias, ordering: .acquiringAndReleasing).newValue
            // The switch itself holds one reference.
            if total < 1 {
                rcuMisuse("PercpuRef: count is \(total - 1) after switching to atomic mode: more puts than gets in percpu mode")
            }
            control.switchInFlight = false
            defer { control.confirmations = [] }
            // Requests made during the switch (switchToPercpu, resurrect)
            // take effect now.
            if !control.forceAtomic && offsetAndMode.load(ordering: .relaxed) & Self.deadFlag == 0 {
                switchToPercpuNow(&control)
            }
            return control.confirmations
        }
        confirmations.forEach { $0() }
        put()
    }

    /// The references counted in the per-thread counters, live threads'
    /// and exited ones', left in place.
    private var perThreadSum: Int {
        guard let offset else { return 0 }
        let (live, folded) = CounterAreas.peek(offset)
        return live &+ folded
    }

    private func switchToPercpuNow(_ control: inout Control) {
        let current = offsetAndMode.load(ordering: .relaxed)
        guard current & Self.atomicMode != 0 else { return }
        // Checked before deferring, so the caller that asked is the one
        // stopped, not the callback thread that would settle it later.
        if !control.allowReinit {
            rcuMisuse("PercpuRef: switch to percpu mode on a ref created without .allowReinit")
        }
        guard !control.switchInFlight else { return }
        // The counters are zero: the switch that made the ref atomic
        // collected them, and no thread counts on them in atomic mode
        // (CounterAreas' invariants).
        count.wrappingAdd(Self.bias, ordering: .relaxed)
        offsetAndMode.store(current & ~Self.atomicMode, ordering: .releasing)
    }
}

/// How a ref starts (`PERCPU_REF_INIT_*`, `PERCPU_REF_ALLOW_REINIT`).
public struct PercpuRefOptions: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Start in atomic mode, and stay there until ``PercpuRef/switchToPercpu()``.
    public static let startAtomic = PercpuRefOptions(rawValue: 1)
    /// Start dead with a count of zero; ``PercpuRef/reinit()`` brings it to life.
    public static let startDead = PercpuRefOptions(rawValue: 2)
    /// Allow the switch back to percpu mode (``PercpuRef/switchToPercpu()``,
    /// ``PercpuRef/reinit()``, ``PercpuRef/resurrect()``). Implied by the two above.
    public static let allowReinit = PercpuRefOptions(rawValue: 4)
}

/// A ``PercpuRef`` as `Spec/RefCount.tla` sees it.
package struct AbstractRefState: Equatable, Sendable, CustomStringConvertible {
    package enum Mode: String, Sendable { case percpu, switching, atomic }
    package var count: Int
    package var mode: Mode
    package var isDead: Bool
    package var forceAtomic: Bool
    package var releases: Int

    package init(count: Int, mode: Mode, isDead: Bool, forceAtomic: Bool, releases: Int) {
        self.count = count
        self.mode = mode
        self.isDead = isDead
        self.forceAtomic = forceAtomic
        self.releases = releases
    }

    package var description: String {
        "[count \(count), \(mode.rawValue)\(isDead ? ", dead" : "")\(forceAtomic ? ", forceAtomic" : ""), releases \(releases)]"
    }
}
