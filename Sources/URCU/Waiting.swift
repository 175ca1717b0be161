import CURCU

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Runs `wait`, a wait the library performs (back-pressure, a barrier, the
/// exit drain, a worker's shutdown, the fork's pause of the callback
/// threads), so that the waiting thread holds up no grace period meanwhile.
///
/// The one mechanism behind every library wait. A registered, online QSBR
/// thread that blocks stalls every QSBR grace period, and so every QSBR
/// callback: a wait for those from such a thread would wait for itself. The
/// thread goes offline for the wait and comes back online after it, as
/// liburcu's own `synchronize_rcu` and `rcu_barrier` do. A thread inside a
/// QSBR read section stays online (going offline would end the section's
/// protection): the callers check that such a wait cannot be for QSBR.
/// The other flavors have no online state: their waits need nothing.
package func whileBlocked<Result, Failure: Error>(
    _ wait: () throws(Failure) -> Result
) throws(Failure) -> Result {
    guard QuiescentStateRCU.isOnline && !QuiescentStateRCU.isInReadSection else { return try wait() }
    QuiescentStateRCU.goOffline()
    defer { liburcuQsbrThreadOnline() }
    return try wait()
}

/// Sleeps while `condition` holds: `initial` microseconds first, doubling
/// up to a millisecond. The library's waits for short-lived states (room
/// under the callback limit, a fork guard step).
func sleepWithBackoff(from initial: UInt32, while condition: () -> Bool) {
    var delay = initial
    while condition() {
        usleep(delay)
        delay = min(delay * 2, 1_000)
    }
}

/// Runs blocking `body` on a thread of its own and suspends until it
/// returns: the async form of a blocking wait, which must not hold one of
/// the few threads of Swift's cooperative pool. If no thread can be
/// created, `body` runs on the caller's thread instead (slower for the
/// pool, never a hang).
package func onThreadOfItsOwn<Result: Sendable>(_ body: @escaping @Sendable () -> Result) async -> Result {
    await withCheckedContinuation { continuation in
        let resume = { @Sendable in continuation.resume(returning: body()) }
        if startDetachedThread(resume) != 0 { resume() }
    }
}

/// Runs `body` on a new detached thread. Returns `pthread_create`'s
/// status: 0, or why there is no thread.
package func startDetachedThread(_ body: @escaping () -> Void) -> Int32 {
    final class Box {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    var thread = pthread_t()
    let box = Unmanaged.passRetained(Box(body))
    let status = pthread_create(&thread, nil, { raw in
        Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
        return nil
    }, box.toOpaque())
    guard status == 0 else {
        box.release()
        return status
    }
    pthread_detach(thread)
    return 0
}
