// Positive control: the same shapes with matching flavors compile, so a
// failure above is the type error, not the harness.
// expect-success
import MemoryRegions
import URCU

final class Config: Sendable { let limit = 1 }

func matched(_ pointer: borrowing RCUPointer<Config, MembarrierRCU>) -> Int? {
    MembarrierRCU.read { section in
        pointer.dereference(in: section) { $0?.limit }
    }
}

final class Node: Sendable {
    let value = 1
    let next = RCUPointer<Node, MembarrierRCU>()
}

/// An RCUReference used inside its section, as the escape tests try not to.
func walk(_ head: borrowing RCUPointer<Node, MembarrierRCU>) -> Int {
    MembarrierRCU.read { section in
        var sum = 0
        var node = head.dereference(in: section)
        while let current = node {
            sum += current.object.value
            node = current.object.next.dereference(in: section)
        }
        return sum
    }
}

// A reference from lookup(_:), put once.
func putOnce(_ table: MemoryRegionTable<MembarrierRCU>, _ key: MemoryRegionKey) {
    guard let reference = table.lookup(key) else { return }
    reference.put()
}
