#if arch(x86_64) && canImport(Glibc)
import Glibc
import Synchronization

/// Runs `body` on the calling thread one instruction at a time (x86's
/// trap flag). After each instruction, `shouldInterleave` is told how many
/// have run; the first time it answers yes, `interleave` runs, before
/// `body`'s next instruction, and `body` goes on at full speed. Returns the
/// number of instructions after which `interleave` ran, or nil if it never
/// did.
///
/// A deterministic schedule for races one instruction wide, which threads
/// on real cores almost never hit: `interleave` can make another thread act
/// between any two instructions of `body`. It runs in a signal handler: it
/// may only spin, or use atomics (not locks, nor anything that allocates),
/// and the other thread must not need a lock `body` may hold (warm the
/// paths up first, so that none is a first use). The handler is
/// process-wide, and every instruction costs a signal: use it in an exit
/// test, on short bodies.
public func stepInstructions(
    of body: () -> Void, interleavingWhen shouldInterleave: (Int) -> Bool, _ interleave: () -> Void
) -> Int? {
    withoutActuallyEscaping(shouldInterleave) { shouldInterleave in
        withoutActuallyEscaping(interleave) { interleave in
            var stepping = sigaction()
            stepping.__sigaction_handler.sa_sigaction = { _, _, context in onTrap(context!) }
            stepping.sa_flags = SA_SIGINFO
            var previous = sigaction()
            sigaction(SIGTRAP, &stepping, &previous)
            steppingState = .starting(shouldInterleave: shouldInterleave, interleave: interleave)
            // The handler sets the trap flag in the context it returns to:
            // from there on, every instruction traps.
            raise(SIGTRAP)
            body()
            // If still stepping, the trap that follows this store ends it:
            // after that, the state is this thread's alone again.
            stopStepping.store(true, ordering: .relaxed)
            let interleavedAfter = if case let .interleaved(after) = steppingState { after } else { Int?.none }
            steppingState = .idle
            stopStepping.store(false, ordering: .relaxed)
            sigaction(SIGTRAP, &previous, nil)
            return interleavedAfter
        }
    }
}

private enum SteppingState {
    case idle
    case starting(shouldInterleave: (Int) -> Bool, interleave: () -> Void)
    case stepping(steps: Int, shouldInterleave: (Int) -> Bool, interleave: () -> Void)
    case interleaved(after: Int)
}

// Only the thread being stepped, and its signal handler, use them. While
// it is stepped, only the handler changes the state.
nonisolated(unsafe) private var steppingState = SteppingState.idle
private let stopStepping = Atomic<Bool>(false)

private func onTrap(_ context: UnsafeMutableRawPointer) {
    switch steppingState {
    case let .starting(shouldInterleave, interleave):
        steppingState = .stepping(steps: 0, shouldInterleave: shouldInterleave, interleave: interleave)
        setTrapFlag(in: context, true)
    case let .stepping(steps, shouldInterleave, interleave):
        if stopStepping.load(ordering: .relaxed) {
            steppingState = .idle
            setTrapFlag(in: context, false)
            return
        }
        guard shouldInterleave(steps + 1) else {
            steppingState = .stepping(steps: steps + 1, shouldInterleave: shouldInterleave, interleave: interleave)
            return
        }
        steppingState = .interleaved(after: steps + 1)
        setTrapFlag(in: context, false)
        interleave()
    case .idle, .interleaved:
        setTrapFlag(in: context, false)
    }
}

/// Sets or clears the trap flag in the registers a signal handler returns
/// to (glibc's `REG_EFL`, 17, is not imported).
private func setTrapFlag(in context: UnsafeMutableRawPointer, _ on: Bool) {
    let trapFlag: Int64 = 0x100
    let flagsOffset = 17 * MemoryLayout<Int64>.stride
    withUnsafeMutableBytes(of: &context.assumingMemoryBound(to: ucontext_t.self).pointee.uc_mcontext.gregs) { registers in
        var flags = registers.load(fromByteOffset: flagsOffset, as: Int64.self)
        if on { flags |= trapFlag } else { flags &= ~trapFlag }
        registers.storeBytes(of: flags, toByteOffset: flagsOffset, as: Int64.self)
    }
}
#endif
