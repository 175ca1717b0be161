import ContextTable
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

struct NoSuchContext: Error {}

extension ContextTable {
    /// A lease on `id`, or a test failure (leases are not copyable, so the
    /// testing macros cannot unwrap them).
    func lease(_ id: ContextID) throws -> ContextLease<Flavor> {
        guard let lease = lookup(id) else { throw NoSuchContext() }
        return lease
    }

    /// Whether a lookup of `id` succeeds (dropping the lease at once).
    func isReachable(_ id: ContextID) -> Bool {
        switch lookup(id) {
        case .some: true
        case .none: false
        }
    }
}

