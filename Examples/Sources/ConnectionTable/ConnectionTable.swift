// A table of connections governed by PercpuRef, as the kernel's fs/aio
// governs its contexts: readers find a connection under RCU and take a
// reference with tryGetLive(); closing unpublishes it and kills the ref;
// the last put releases it, and its resources are freed through the double
// bounce (after a grace period, on a queue that may block), because a
// reader that found it just before the unpublish may still be looking.
//
//     swift run -c release ConnectionTable [seconds]

import Dispatch
import Foundation
import PercpuRef
import Synchronization
import URCU

/// What closing a connection frees: a socket, buffers. Counted so that the
/// program can check each was closed exactly once, and never used after.
final class Resources: Sendable {
    static let open = Atomic<Int>(0)
    static let closes = Atomic<Int>(0)
    static let usedAfterClose = Atomic<Int>(0)

    private let closed = Atomic<Bool>(false)

    init() { Resources.open.wrappingAdd(1, ordering: .relaxed) }

    func use() {
        if closed.load(ordering: .acquiring) { Resources.usedAfterClose.wrappingAdd(1, ordering: .relaxed) }
    }

    func close() {
        guard !closed.exchange(true, ordering: .acquiringAndReleasing) else { fatalError("closed twice") }
        Resources.open.wrappingSubtract(1, ordering: .relaxed)
        Resources.closes.wrappingAdd(1, ordering: .relaxed)
    }
}

/// Where the second bounce runs: a queue, so freeing may block.
let cleanupQueue = DispatchQueue(label: "connections.cleanup")

final class Connection: Sendable {
    let resources = Resources()
    /// Holders of the connection. Its release closure captures the
    /// resources, not the connection: the connection owns the ref, so
    /// capturing it would be a retain cycle.
    let users: PercpuRef<MembarrierRCU>

    init() {
        users = PercpuRef { [resources] in
            // No grace period is implied here: readers that found the
            // connection before it was unpublished may still hold it.
            MembarrierRCU.afterGracePeriod(on: cleanupQueue) { resources.close() }
        }
    }
}

/// `RCUPointer` is `~Copyable` (it owns its value): an array holds each in
/// a class.
final class Slot: Sendable { let connection = RCUPointer<Connection, MembarrierRCU>() }

let slots = (0..<16).map { _ in Slot() }
let running = Atomic<Bool>(true)
let lookups = Atomic<Int>(0)

/// Finds the connection in `slot` and holds a reference to it, or nil if
/// there is none or it is closing.
func lookUp(_ slot: Slot) -> Connection? {
    MembarrierRCU.read { section in
        slot.connection.dereference(in: section) { connection in
            // Returning it retains it, while the section still protects it.
            guard let connection, connection.users.tryGetLive() else { return nil }
            return connection
        }
    }
}

@main
enum ConnectionTable {
    static func main() async {
        let seconds = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 1
        let readers = DispatchGroup()
        for reader in 0..<3 {
            readers.enter()
            Thread {
                var index = reader
                while running.load(ordering: .relaxed) {
                    index = (index &* 31 &+ 7) % slots.count
                    if let connection = lookUp(slots[index]) {
                        connection.resources.use()
                        connection.users.put()
                        lookups.wrappingAdd(1, ordering: .relaxed)
                    }
                }
                readers.leave()
            }.start()
        }

        // Open and close connections until the time is up.
        var opened = 0
        let deadline = Date().addingTimeInterval(seconds)
        var turn = 0
        while Date() < deadline {
            let slot = slots[turn % slots.count]
            turn += 1
            if let old = slot.connection.exchange(nil) {
                old.users.kill()           // tryGetLive fails from now on; the owner's reference goes
            } else {
                slot.connection.assign(Connection())
                opened += 1
            }
            try? await Task.sleep(for: .microseconds(100))
        }
        for slot in slots { slot.connection.exchange(nil)?.users.kill() }
        running.store(false, ordering: .relaxed)
        await withCheckedContinuation { done in readers.notify(queue: .global()) { @Sendable in done.resume() } }

        // A teardown crosses several grace periods and an executor: the
        // kill's switch, the release's grace period, the free on the
        // cleanup queue. RCUQuiescence.wait() waits for the whole chain.
        await RCUQuiescence.wait()

        let closes = Resources.closes.load(ordering: .relaxed)
        let usedAfterClose = Resources.usedAfterClose.load(ordering: .relaxed)
        print("""
            connection table: \(opened) connections opened and closed under \(lookups.load(ordering: .relaxed)) \
            lookups (3 threads); \(closes) freed, \(Resources.open.load(ordering: .relaxed)) still open, \
            \(usedAfterClose) used after close
            """)
        guard closes == opened, usedAfterClose == 0 else {
            print("connection table: FAILED: expected \(opened) freed and none used after close")
            exit(1)
        }
    }
}
