// expect-error: 'reference' consumed more than once
// A reference is put once: put() consumes it, and it cannot be copied.
import MemoryRegions
import URCU

func putTwice(_ table: MemoryRegionTable<MembarrierRCU>, _ key: MemoryRegionKey) {
    guard let reference = table.lookup(key) else { return }
    reference.put()
    reference.put()
}
