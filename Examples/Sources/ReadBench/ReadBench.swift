// The read side from another package, against C in the same run: a memb
// read section around a load of a published value, in Swift through the
// library and in C on liburcu's inline read side (CReadLoop).
//
//     swift run -c release ReadBench [iterations]

import CReadLoop
import Dispatch
import URCU

final class Value: Sendable {
    let number: UInt64
    init(_ number: UInt64) { self.number = number }
}

@main
enum ReadBench {
    static func main() {
        let iterations = CommandLine.arguments.dropFirst().first.flatMap(UInt64.init) ?? 50_000_000
        let published = RCUPointer<Value, MembarrierRCU>(Value(1))
        let cValue = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        cValue.initialize(to: 1)
        var cSlot: UnsafeMutablePointer<UInt64>? = cValue

        /// Nanoseconds per iteration of `loop`, the best of five runs.
        func measure(_ loop: () -> UInt64) -> Double {
            var best = Double.infinity
            for _ in 0..<5 {
                let start = DispatchTime.now().uptimeNanoseconds
                let sum = loop()
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start)
                precondition(sum == iterations, "the loop read something else")
                best = min(best, elapsed / Double(iterations))
            }
            return best
        }

        // Swift first: its first read section registers this thread with
        // memb, which the C loop, calling liburcu directly, relies on.
        let swift = measure {
            var sum: UInt64 = 0
            for _ in 0..<iterations {
                sum &+= MembarrierRCU.read { section in published.dereference(in: section) { $0!.number } }
            }
            return sum
        }
        let c = measure { withUnsafePointer(to: &cSlot) { creadloop_memb($0, iterations) } }
        cValue.deallocate()

        let ratio = swift / c
        print("read bench: memb read section + dereference, \(iterations) iterations: "
              + "C \(rounded(c)) ns, Swift from another package \(rounded(swift)) ns, \(rounded(ratio))x C")
    }

    static func rounded(_ value: Double) -> String { String(Double((value * 100).rounded()) / 100) }
}
