// The read side from another package, against C in the same run, in C on
// liburcu's inline read side (CReadLoop):
// - a memb read section around a load of a published value;
// - a walk along a 1,000-node list whose links are RCU-protected, with
//   RCUReference (no retain or release per hop; `make examples` checks the
//   disassembly of `walk` with scripts/check-zero-retain.sh).
//
//     swift run -c release ReadBench [iterations]

import CReadLoop
import Dispatch
import URCU

final class Value: Sendable {
    let number: UInt64
    init(_ number: UInt64) { self.number = number }
}

final class ListNode: Sendable {
    let value: UInt64
    let next: RCUPointer<ListNode, MembarrierRCU>
    init(value: UInt64, next: ListNode?) {
        self.value = value
        self.next = RCUPointer(next)
    }
}

/// Sums the list inside one read section, following each link with
/// `dereference(in:)`: no reference counting.
@inline(never)
func walk(_ head: borrowing RCUPointer<ListNode, MembarrierRCU>) -> UInt64 {
    MembarrierRCU.read { section in
        var sum: UInt64 = 0
        var node = head.dereference(in: section)
        while let current = node {
            sum &+= current.object.value
            node = current.object.next.dereference(in: section)
        }
        return sum
    }
}

@main
enum ReadBench {
    static func main() {
        let iterations = CommandLine.arguments.dropFirst().first.flatMap(UInt64.init) ?? 50_000_000

        /// Times `c` and `swift` back to back, seven rounds, so that both
        /// see the same machine (a shared one: load comes and goes), and
        /// reports the medians: each loop runs `repetitions` times and
        /// returns its checksum.
        func compare(_ what: String, _ repetitions: UInt64, expecting checksum: UInt64,
                     c: () -> UInt64, swift: () -> UInt64) {
            func time(_ loop: () -> UInt64) -> Double {
                let start = DispatchTime.now().uptimeNanoseconds
                let sum = loop()
                let elapsed = Double(DispatchTime.now().uptimeNanoseconds - start)
                precondition(sum == checksum, "the loop read something else")
                return elapsed / Double(repetitions)
            }
            var rounds: [(c: Double, swift: Double)] = []
            for _ in 0..<7 { rounds.append((time(c), time(swift))) }
            func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
            report(what, c: median(rounds.map(\.c)), swift: median(rounds.map(\.swift)),
                   ratio: median(rounds.map { $0.swift / $0.c }))
        }

        // Read section + dereference. This thread reads in Swift first: its
        // first read section registers it with memb, which the C loops,
        // calling liburcu directly, rely on.
        let published = RCUPointer<Value, MembarrierRCU>(Value(1))
        _ = MembarrierRCU.read { section in published.dereference(in: section) { $0!.number } }
        let cValue = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
        cValue.initialize(to: 1)
        var cSlot: UnsafeMutablePointer<UInt64>? = cValue
        compare("memb read section + dereference", iterations, expecting: iterations) {
            withUnsafePointer(to: &cSlot) { creadloop_memb($0, iterations) }
        } swift: {
            var sum: UInt64 = 0
            for _ in 0..<iterations {
                sum &+= MembarrierRCU.read { section in published.dereference(in: section) { $0!.number } }
            }
            return sum
        }
        cValue.deallocate()

        // The list walk.
        let length: UInt64 = 1_000
        let walks = max(iterations / 1_000, 100)
        var swiftHead: ListNode?
        for value in stride(from: length, through: 1, by: -1) { swiftHead = ListNode(value: value, next: swiftHead) }
        let list = RCUPointer<ListNode, MembarrierRCU>(swiftHead)
        swiftHead = nil
        var cHead = creadloop_list_make(length)
        compare("walk of a 1,000-node RCU list", walks, expecting: walks &* (length * (length + 1) / 2)) {
            withUnsafePointer(to: &cHead) { creadloop_list_walk($0, walks) }
        } swift: {
            var sum: UInt64 = 0
            for _ in 0..<walks { sum &+= walk(list) }
            return sum
        }
        creadloop_list_free(cHead)
    }

    static func report(_ what: String, c: Double, swift: Double, ratio: Double) {
        func rounded(_ value: Double) -> String { String((value * 100).rounded() / 100) }
        print("read bench: \(what): C \(rounded(c)) ns, Swift from another package \(rounded(swift)) ns, "
              + "\(rounded(ratio))x C (medians of 7 rounds)")
    }
}
