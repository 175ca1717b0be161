import ContextTable
import URCU
import URCUTesting

#if canImport(Glibc)
import Glibc
#endif

struct NoSuchContext: Error {}

/// How long a test lets a teardown go without progress before it reports
/// what is left: far longer than a free takes on a loaded machine (a grace
/// period, then a hop through the cleanup queue), yet a leaked context fails
/// its test in seconds (the library's default would wait 30 s per check,
/// and a property test checks many times).
let teardownStallSeconds = 5.0

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

