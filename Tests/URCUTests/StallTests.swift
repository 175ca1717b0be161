import Synchronization
import TestSupport
import Testing
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

/// Stall reports. The threshold and handler are process wide, so each test
/// runs in a child process of its own.
@Suite("Grace-period stall reports")
struct StallTests {
    /// A reader named `name` sits in a read section of `F` until released;
    /// another thread's synchronize() must be reported as stalled on it.
    static func stuckReaderIsNamed<F: RCUFlavor>(_: F.Type, reader name: String, qsbrOnline: Bool = false) -> Bool {
        RCUStallMonitor.threshold = 0.2
        let reports = Lock<[RCUStallMonitor.Report]>([])
        RCUStallMonitor.setHandler { report in reports.withLock { $0.append(report) } }
        let entered = Latch(), release = Latch()
        let reader = JoinableThread(name: name) {
            let isQSBR = F.self == QuiescentStateRCU.self
            if isQSBR { QuiescentStateRCU.registerThread() }
            if qsbrOnline {
                // Online, never reporting a quiescent state: a QSBR stall
                // without any read section.
                entered.open()
                release.wait()
            } else {
                F.read { _ in entered.open(); release.wait() }
            }
            if isQSBR { QuiescentStateRCU.unregisterThread() }
        }
        entered.wait()
        let updater = JoinableThread { F.synchronize() }
        let reported = eventually(seconds: 10) { !reports.withLock { $0.isEmpty } }
        release.open()
        reader.join()
        updater.join()
        let report = reports.withLock { $0.first }
        print(report?.description ?? "no report")
        // Reported once past the threshold, within one watchdog period
        // (threshold / 4, at least 10 ms) and some scheduling slack.
        let onTime = report.map { $0.seconds >= 0.2 && $0.seconds < 0.45 } ?? false
        return reported && onTime && report?.flavor == F.name
            && report?.blockingReaders.contains { $0.contains("\"\(name)\"") } == true
    }

    @Test func membStallNamesTheReader() async {
        await #expect(processExitsWith: .success) {
            exit(StallTests.stuckReaderIsNamed(MembarrierRCU.self, reader: "stuck-memb") ? 0 : 1)
        }
    }

    @Test func mbStallNamesTheReader() async {
        await #expect(processExitsWith: .success) {
            exit(StallTests.stuckReaderIsNamed(MemoryBarrierRCU.self, reader: "stuck-mb") ? 0 : 1)
        }
    }

    @Test func qsbrStallNamesTheOnlineThread() async {
        await #expect(processExitsWith: .success) {
            exit(StallTests.stuckReaderIsNamed(QuiescentStateRCU.self, reader: "stuck-qsbr", qsbrOnline: true) ? 0 : 1)
        }
    }

    @Test("a quick grace period is not reported")
    func noFalseAlarm() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            RCUStallMonitor.threshold = 0.2
            // Blocking grace periods, and callbacks (watched too).
            (0..<20).forEach { _ in MembarrierRCU.synchronize() }
            let ran = Counter()
            (0..<20).forEach { _ in MembarrierRCU.call { ran.increment() } }
            while ran.value < 20 { usleep(1_000) }
            usleep(500_000)
            exit(0)
        }
        let stderr = standardError(of: result)
        #expect(!stderr.contains("stalled"), "\(stderr)")
    }

    @Test("the default report goes to standard error")
    func defaultReportOnStandardError() async {
        let result = await #expect(processExitsWith: .success, observing: [\.standardErrorContent]) {
            RCUStallMonitor.threshold = 0.2
            let entered = Latch(), release = Latch()
            let reader = JoinableThread(name: "stuck-default") {
                MembarrierRCU.read { _ in entered.open(); release.wait() }
            }
            entered.wait()
            let updater = JoinableThread { MembarrierRCU.synchronize() }
            usleep(800_000)
            release.open()
            reader.join()
            updater.join()
            exit(0)
        }
        let stderr = standardError(of: result)
        #expect(stderr.contains("swift-urcu: memb grace period stalled for"), "\(stderr)")
        #expect(stderr.contains("\"stuck-default\""), "\(stderr)")
    }

    /// A reader named `name` sits in a memb read section; updaters only
    /// queue callbacks (`retire`, `call`), never `synchronize()`. The
    /// callbacks' stall must be reported, naming the reader.
    static func callbackStallIsReported() -> Bool {
        RCUStallMonitor.threshold = 0.3
        let reports = Lock<[RCUStallMonitor.Report]>([])
        RCUStallMonitor.setHandler { report in reports.withLock { $0.append(report) } }
        let entered = Latch(), release = Latch()
        let reader = JoinableThread(name: "stuck-cb") {
            MembarrierRCU.read { _ in entered.open(); release.wait() }
        }
        entered.wait()
        let pointer = RCUPointer<Canary, MembarrierRCU>(Canary(0))
        for value in 1...100 { pointer.assign(Canary(value)) }
        MembarrierRCU.call {}
        let reported = eventually(seconds: 10) { !reports.withLock { $0.isEmpty } }
        release.open()
        reader.join()
        let report = reports.withLock { $0.first }
        print(report?.description ?? "no report")
        return reported && report?.flavor == "memb" && (report?.pendingCallbacks ?? 0) > 0
            && report?.blockingReaders.contains { $0.contains("\"stuck-cb\"") } == true
            && report?.description.contains("memb callbacks stalled") == true
    }

    @Test("callbacks that make no progress are reported, naming the reader that holds them up")
    func callbackStall() async {
        await #expect(processExitsWith: .success) {
            exit(StallTests.callbackStallIsReported() ? 0 : 1)
        }
    }
}
