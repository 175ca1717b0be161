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

// A reference from lookup(_:), put once.
func putOnce(_ table: MemoryRegionTable<MembarrierRCU>, _ key: MemoryRegionKey) {
    guard let reference = table.lookup(key) else { return }
    reference.put()
}
