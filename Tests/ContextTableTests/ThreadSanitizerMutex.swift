#if ThreadSanitizerAnnotations
import URCU

/// The ThreadSanitizer pass's lock (see `PthreadMutex` in URCU).
typealias Mutex<Value: ~Copyable> = PthreadMutex<Value>
#endif
