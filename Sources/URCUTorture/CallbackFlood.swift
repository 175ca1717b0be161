import Synchronization
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// A flood of `call_rcu` closures from several threads, measuring how far
/// the queue and the process's memory grow, with and without back-pressure
/// (``LiburcuFlavor/pendingCallbackLimit``).
public enum CallbackFlood {
    public struct Report: Sendable {
        public var callbacks: Int
        public var limit: Int?
        public var seconds: Double
        /// The most callbacks seen pending at once.
        public var peakPending: Int
        /// The process's peak resident set during the flood, in MiB.
        public var peakRSSMiB: Double
        /// Callbacks still pending after the final barrier. Must be zero.
        public var leftPending: Int
    }

    public static func run<Flavor: LiburcuFlavor>(
        _ flavor: Flavor.Type, perThread: Int, threads: Int = 2, limit: Int?
    ) -> Report {
        Flavor.pendingCallbackLimit = limit
        defer { Flavor.pendingCallbackLimit = nil }
        resetPeakRSS()
        let stop = Latch()
        let peak = Atomic<Int>(0)
        let monitor = JoinableThread {
            while !stop.isOpen {
                let pending = Flavor.pendingCallbacks
                if pending > peak.load(ordering: .relaxed) { peak.store(pending, ordering: .relaxed) }
                usleep(200)
            }
        }
        let start = monotonicSeconds()
        let producers = (0..<threads).map { _ in
            JoinableThread {
                for index in 0..<perThread { Flavor.call { _ = index } }
            }
        }
        producers.forEach { $0.join() }
        while Flavor.pendingCallbacks > 0 { Flavor.barrier() }
        let seconds = monotonicSeconds() - start
        stop.open()
        monitor.join()
        return Report(
            callbacks: perThread * threads, limit: limit, seconds: seconds,
            peakPending: peak.load(ordering: .relaxed), peakRSSMiB: peakRSSMiB(),
            leftPending: Flavor.pendingCallbacks)
    }

    /// Resets the kernel's peak-RSS mark (VmHWM) of this process.
    static func resetPeakRSS() {
        guard let file = fopen("/proc/self/clear_refs", "w") else { return }
        fputs("5", file)
        fclose(file)
    }

    /// VmHWM from /proc/self/status, in MiB.
    static func peakRSSMiB() -> Double {
        guard let file = fopen("/proc/self/status", "r") else { return -1 }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>? = nil
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0 {
            let text = String(cString: line!)
            if text.hasPrefix("VmHWM:") {
                let kilobytes = text.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap { Double($0) } ?? -1
                return kilobytes / 1024
            }
        }
        return -1
    }
}
