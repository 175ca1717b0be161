import Synchronization

#if ThreadSanitizerAnnotations
/// The lock every module of the package uses: a pthread mutex that
/// ThreadSanitizer sees (``PthreadMutex``) in builds with the trait
/// ThreadSanitizerAnnotations, `Synchronization.Mutex` in all others.
package typealias Lock<Value: ~Copyable> = PthreadMutex<Value>
#else
/// The lock every module of the package uses: `Synchronization.Mutex`,
/// or, in builds with the trait ThreadSanitizerAnnotations, a pthread
/// mutex that ThreadSanitizer sees (`PthreadMutex`).
package typealias Lock<Value: ~Copyable> = Mutex<Value>
#endif
