import CURCU
import Synchronization

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Recycles `call_rcu` nodes between callback threads and updaters.
///
/// Every callback needs a node, allocated by the updater and released by a
/// callback thread on the other core; with malloc, every such pair crosses
/// arenas. Callback threads instead push finished nodes on a shared stack;
/// an updater whose own cache is empty takes the whole stack at once and
/// keeps it in a thread-local list. Pushing one node and taking all of them
/// are both safe against ABA, which popping one node would not be.
///
/// The shared stack holds at most `sharedLimit` nodes (beyond that,
/// callback threads free them), so a flood of callbacks cannot pin its peak
/// memory forever; a thread's cache is freed when the thread exits.
package enum CallbackNodePool {
    /// The stack's top node and its length, swapped together (a double-word
    /// compare-and-exchange), so the length is exact without walking the
    /// list and without reading nodes another thread may own by then.
    private static let shared = Atomic<WordPair>(WordPair(first: 0, second: 0))
    package static let sharedLimit: UInt = 4_096

    /// Nodes allocated and not yet freed, wherever they are: in a queued
    /// callback, a thread's cache or the shared stack. Counted where nodes
    /// are allocated and freed, never where they are reused, so a pool that
    /// keeps its bound keeps this bounded (the tests check it).
    package static var nodesAlive: Int { allocatedNodes.load(ordering: .relaxed) }
    private static let allocatedNodes = Atomic<Int>(0)

    private static let freeCacheAtExit = threadExitKey { _ in
        var node = curcu_node_cache_get()
        curcu_node_cache_set(nil)
        var freed = 0
        while let current = node {
            node = CallbackNodePool.next(current)
            current.deallocate()
            freed += 1
        }
        CallbackNodePool.allocatedNodes.wrappingSubtract(freed, ordering: .relaxed)
    }

    /// See `forkProcess()`: the key is first touched outside any fork step.
    static func finishLazyInitialization() { _ = freeCacheAtExit }

    /// Once its callback has run, liburcu no longer uses a node's
    /// `rcu_head`: its first word links the node in a list.
    private static func next(_ node: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer? {
        node.load(as: UnsafeMutableRawPointer?.self)
    }

    /// A node for a new callback: from this thread's cache, else the
    /// shared stack, else malloc.
    static func take() -> UnsafeMutableRawPointer {
        if let node = curcu_node_cache_get() {
            curcu_node_cache_set(next(node))
            return node
        }
        if shared.load(ordering: .relaxed).second > 0,
           let chain = UnsafeMutableRawPointer(bitPattern: shared.exchange(WordPair(first: 0, second: 0), ordering: .acquiring).first) {
            // Arm the exit-time free for this thread's cache.
            pthread_setspecific(freeCacheAtExit, UnsafeRawPointer(bitPattern: 1))
            curcu_node_cache_set(next(chain))
            return chain
        }
        allocatedNodes.wrappingAdd(1, ordering: .relaxed)
        return .allocate(byteCount: CallbackNode.size, alignment: CallbackNode.alignment)
    }

    /// Gives back the node of a callback that has run.
    static func recycle(_ node: UnsafeMutableRawPointer) {
        var top = shared.load(ordering: .relaxed)
        while true {
            guard top.second < sharedLimit else {
                node.deallocate()
                allocatedNodes.wrappingSubtract(1, ordering: .relaxed)
                return
            }
            node.storeBytes(of: UnsafeMutableRawPointer(bitPattern: top.first), as: UnsafeMutableRawPointer?.self)
            let pushed = WordPair(first: UInt(bitPattern: Int(bitPattern: node)), second: top.second + 1)
            let (exchanged, original) = shared.weakCompareExchange(
                expected: top, desired: pushed, successOrdering: .releasing, failureOrdering: .relaxed)
            if exchanged { return }
            top = original
        }
    }
}
