import URCU

/// Every flavor the library ships, for parameterised tests.
public let allFlavors: [any LiburcuFlavor.Type] = [
    MembarrierRCU.self, QuiescentStateRCU.self, MemoryBarrierRCU.self, BulletproofRCU.self,
]

extension RCUFlavor {
    /// Runs `body` as a reader thread of this flavor: QSBR threads must
    /// register themselves, the others register on their own.
    public static func asReaderThread<Result>(_ body: () -> Result) -> Result {
        guard Self.self == QuiescentStateRCU.self else { return body() }
        QuiescentStateRCU.registerThread()
        defer { QuiescentStateRCU.unregisterThread() }
        return body()
    }

    /// What a reader loop does between sections: QSBR readers report a
    /// quiescent state, the others need nothing.
    public static func betweenSections() {
        if Self.self == QuiescentStateRCU.self { QuiescentStateRCU.quiescentState() }
    }
}
