// expect-error: 'MemoryRegionReference<Flavor>' initializer is inaccessible due to 'internal' protection level
// A reference is a region reference obtained from lookup(_:): no other code
// can make one, so nothing can put a reference it never got.
import MemoryRegions
import URCU

func putWithoutLookup(_ region: MemoryRegion<MembarrierRCU>) {
    let reference = MemoryRegionReference<MembarrierRCU>(region: region)
    reference.put()
}
