import Dispatch

/// A task executor on a serial dispatch queue of its own.
///
/// A task that prefers it (`Task(executorPreference:)`) does not depend on
/// the cooperative pool: on a 2-core machine that pool has two threads, and
/// code that blocks them (other tests, say) would otherwise hold the task
/// up for as long as it blocks.
public final class QueueExecutor: TaskExecutor {
    /// The serial queue that runs the executor's jobs.
    public let queue: DispatchQueue

    /// Creates an executor on a new serial queue labelled `label`.
    public init(label: String = "urcu.executor") {
        queue = DispatchQueue(label: label)
    }

    /// Runs `job` on ``queue``.
    public func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async { job.runSynchronously(on: self.asUnownedTaskExecutor()) }
    }
}
