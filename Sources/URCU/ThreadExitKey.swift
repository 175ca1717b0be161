#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A thread-specific key whose `destructor` runs at the exit of every
/// thread that has set a non-nil value for it (`pthread_key_create`).
package func threadExitKey(_ destructor: @escaping @convention(c) (UnsafeMutableRawPointer?) -> Void) -> pthread_key_t {
    var key = pthread_key_t()
    let status = pthread_key_create(&key, destructor)
    precondition(status == 0, "swift-urcu: pthread_key_create failed (\(status))")
    return key
}
