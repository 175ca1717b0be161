@testable import ContextTable
import Foundation
import TestSupport
import Testing

extension Conformance {
@Suite("AddressSanitizer catches the bug the grace period prevents")
struct AddressSanitizerTests {
    /// A reader loads a context under RCU and is stopped inside its read
    /// section; the context is destroyed and its last reference dropped;
    /// the reader then reads the context's ring through the pointer it
    /// loaded. Returns the ring head it read.
    static func readerReadsRingAfterTeardown(reclamation: any ContextReclamation) throws -> UInt32 {
        let run = try ModelRun.readerInsideTeardown(reclamation: reclamation)
        // t2 is still inside its read section with the pointer it loaded.
        let loaded = try #require(run.recorder.context(1) as? Context<ModelFlavor>)
        return loaded.ring.userIndices.pointee.head
    }

    @Test("with the double bounce, a reader inside its section reads valid memory")
    func doubleBounceKeepsMemory() throws {
        #expect(try Self.readerReadsRingAfterTeardown(reclamation: DoubleBounce()) == 0)
    }

    @Test("without the grace period, ASan reports the reader's heap-use-after-free",
          .enabled(if: addressSanitizerIsActive, "needs the AddressSanitizer pass (make test runs it)"))
    func withoutGracePeriodIsReported() async {
        let result = await #expect(processExitsWith: .failure, observing: [\.standardErrorContent]) {
            _ = try? AddressSanitizerTests.readerReadsRingAfterTeardown(reclamation: FreeWithoutGracePeriod())
        }
        let report = standardError(of: result)
        #expect(report.contains("heap-use-after-free"), "stderr was: \(report.suffix(2000))")
        // Freed by the ring's deallocate (as the mangled name shows it).
        #expect(report.contains("CompletionRingC10deallocate"), "the freed memory should be the ring: \(report.suffix(2000))")
    }
}
}
