import ContextTable
import URCU

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

/// A joinable OS thread.
final class Worker: @unchecked Sendable {
    private var thread = pthread_t()

    init(_ body: @escaping @Sendable () -> Void) {
        final class Box {
            let body: @Sendable () -> Void
            init(_ body: @escaping @Sendable () -> Void) { self.body = body }
        }
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        pthread_create(&thread, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
    }

    func join() { pthread_join(thread, nil) }
}
