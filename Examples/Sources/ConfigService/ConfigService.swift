// A configuration service with hot reload: readers on threads and in tasks
// read the current configuration with no lock and no reference counting,
// while a reloader publishes new versions. Every replaced version is freed
// once the readers that might hold it have left: the program checks that
// each one was, exactly once, and that no reader ever saw a torn or freed
// configuration.
//
//     swift run -c release ConfigService [seconds]

import Dispatch
import Foundation
import Synchronization
import URCU

/// Configurations alive: created and not yet freed.
let alive = Atomic<Int>(0)
/// Configurations freed, each by its own deinit.
let freed = Atomic<Int>(0)

/// A configuration: immutable once published, as RCU readers require.
final class Config: Sendable {
    let version: Int
    let limits: [String: Int]

    init(version: Int) {
        self.version = version
        limits = ["connections": version * 10, "timeout": version * 10 + 5]
        alive.wrappingAdd(1, ordering: .relaxed)
    }

    deinit {
        alive.wrappingSubtract(1, ordering: .relaxed)
        freed.wrappingAdd(1, ordering: .relaxed)
    }

    /// Whether the configuration is whole (a freed or torn one would not be).
    var isConsistent: Bool {
        limits["connections"] == version * 10 && limits["timeout"] == version * 10 + 5
    }
}

/// Settings that are a value, not an object: `RCUBox` copies, modifies and
/// publishes them, and retires the old copy after a grace period.
struct Sampling: Sendable { var ratePerMille: Int; var burst: Int }

let current = RCUPointer<Config, MembarrierRCU>(Config(version: 1))
let sampling = RCUBox<Sampling, MembarrierRCU>(Sampling(ratePerMille: 10, burst: 1))

let running = Atomic<Bool>(true)
let reads = Atomic<Int>(0)
let inconsistentReads = Atomic<Int>(0)

/// One read: the configuration is lent to the closure, never retained.
func readOnce() {
    let consistent = MembarrierRCU.read { section in
        current.dereference(in: section) { $0?.isConsistent ?? false }
    }
    let burst = sampling.read { $0.burst }
    if !consistent || burst < 1 { inconsistentReads.wrappingAdd(1, ordering: .relaxed) }
    reads.wrappingAdd(1, ordering: .relaxed)
}

@main
enum ConfigService {
    static func main() async {
        let seconds = CommandLine.arguments.dropFirst().first.flatMap(Double.init) ?? 1

        // Reader threads.
        let readerThreads = DispatchGroup()
        for _ in 0..<2 {
            readerThreads.enter()
            Thread {
                while running.load(ordering: .relaxed) { readOnce() }
                readerThreads.leave()
            }.start()
        }
        // Reader tasks: a read section never spans a suspension point.
        let readerTasks = Task {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask {
                        while running.load(ordering: .relaxed) {
                            for _ in 0..<100 { readOnce() }
                            await Task.yield()
                        }
                    }
                }
            }
        }

        // The reloader: publish a new version; the old one is retired.
        var version = 1
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            version += 1
            current.assign(Config(version: version))
            sampling.update { $0.burst = version % 7 + 1 }
            try? await Task.sleep(for: .microseconds(200))
        }
        running.store(false, ordering: .relaxed)
        await readerTasks.value
        await withCheckedContinuation { done in readerThreads.notify(queue: .global()) { @Sendable in done.resume() } }

        // Every version retired so far is freed once its grace period has
        // passed and its callback has run: barrier() waits for both.
        await MembarrierRCU.barrier()
        let retired = version - 1
        let freedCount = freed.load(ordering: .relaxed), aliveCount = alive.load(ordering: .relaxed)
        let inconsistent = inconsistentReads.load(ordering: .relaxed)
        print("""
            config service: \(retired) reloads under \(reads.load(ordering: .relaxed)) reads \
            (2 threads, 4 tasks); \(freedCount) configurations freed, \(aliveCount) alive, \
            \(inconsistent) inconsistent reads
            """)
        guard freedCount == retired, aliveCount == 1, inconsistent == 0 else {
            print("config service: FAILED: expected \(retired) freed, 1 alive, 0 inconsistent")
            exit(1)
        }
    }
}
