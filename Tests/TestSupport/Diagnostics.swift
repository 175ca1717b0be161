import Foundation
#if canImport(Glibc)
import Glibc
#endif
import Testing
import URCU
import URCUTesting

/// Expects the child process of an exit test to have printed the library's
/// misuse diagnostic with `message`. (An exit test's body cannot capture
/// anything, so each test spells out its own `#expect(processExitsWith:)`
/// and hands the result here.)
public func expectDiagnostic(
    _ result: ExitTest.Result?, _ message: String, sourceLocation: SourceLocation = #_sourceLocation
) {
    let stderr = standardError(of: result)
    #expect(stderr.contains("swift-urcu misuse: \(message)"), "stderr was: \(stderr)", sourceLocation: sourceLocation)
}

/// What the child process of an exit test wrote to standard error (observe
/// `\.standardErrorContent` to have it).
public func standardError(of result: ExitTest.Result?) -> String {
    String(decoding: result?.standardErrorContent ?? [], as: UTF8.self)
}

/// Runs blocking `body` on its own thread and awaits it, so a test that
/// blocks for long does not hold one of the few cooperative-pool threads
/// that tasks queued by the code under test need in order to run.
public func offPool<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
    await onThreadOfItsOwn(body)
}

/// Runs `count` threads to completion.
public func runThreads(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let threads = (0..<count).map { index in JoinableThread { body(index) } }
    threads.forEach { $0.join() }
}

/// Runs `count` threads to completion, started together: each runs `body`
/// only once all of them exist, so that their first steps race too.
public func runThreadsTogether(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
    let ready = Counter(), start = Latch()
    runThreads(count) { index in
        ready.increment()
        if ready.value == count { start.open() }
        start.wait()
        body(index)
    }
}

/// Varies the calling thread's schedule at random, as rcutorture does:
/// now and then it yields, now and then it spins a while.
public func varySchedule(using random: inout SplitMix) {
    switch Int.random(in: 0..<16, using: &random) {
    case 0: sched_yield()
    case 1: for _ in 0..<Int.random(in: 0..<2_000, using: &random) { _ = random.next() }
    default: break
    }
}

/// Whether this process runs under AddressSanitizer (its runtime is
/// linked in only then).
// (A nil handle is glibc's RTLD_DEFAULT: the whole process.)
public let addressSanitizerIsActive = dlsym(nil, "__asan_init") != nil
