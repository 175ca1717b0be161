import ContextTable
import Foundation
import Testing

/// The checks of the implementation against `Spec/`. Serialized: the
/// model-based tests and the negative controls share ``ModelFlavor``.
@Suite("Conformance to the spec", .serialized)
struct Conformance {}

extension Conformance {
/// The implementation driven along every state and transition of TLC's
/// state graph of `Spec/MBTLifecycle.tla`, with the state compared after
/// every step (see ``ModelExplorer``).
@Suite("Model-based tests from the spec's state graph")
struct ModelBasedTests {
    static let oneContext = (config: "MBTLifecycle", bounds: ModelBounds(contexts: 1, threads: 2, budget: 1))

    /// About 11,000 states each: the AddressSanitizer pass of `make test`
    /// leaves them out (they took 6 of its 7 minutes; the plain pass walks
    /// them).
    static let twoContexts: [(config: String, bounds: ModelBounds)] = [
        ("MBTLifecycleBudget", ModelBounds(contexts: 2, threads: 1, budget: 1)),
        ("MBTLifecycleTableFull", ModelBounds(contexts: 2, threads: 1, budget: 2)),
    ]

    /// 2 contexts × 2 threads, refs in either mode: 92,560 states,
    /// too slow for `make test`; `make model-based-wide` runs it.
    static let wide = (config: "MBTLifecycleWide", bounds: ModelBounds(contexts: 2, threads: 2, budget: 2))

    @Test("every state and transition of the graph, on the implementation")
    func coverage() throws {
        try Self.checkCoverage(config: Self.oneContext.config, bounds: Self.oneContext.bounds)
    }

    @Test("the same for 2 contexts and 1 thread", arguments: twoContexts.indices)
    func twoContextCoverage(configuration: Int) throws {
        let (config, bounds) = Self.twoContexts[configuration]
        try Self.checkCoverage(config: config, bounds: bounds)
    }

    @Test("the same for 2 contexts and 2 threads",
          .enabled(if: ProcessInfo.processInfo.environment["MODEL_BASED_WIDE"] == "1",
                   "slow: make model-based-wide runs it"))
    func wideCoverage() throws {
        try Self.checkCoverage(config: Self.wide.config, bounds: Self.wide.bounds)
    }

    /// Walks the graph of `config` on the implementation, and prints what
    /// it covered.
    static func checkCoverage(config: String, bounds: ModelBounds) throws {
        let loading = Date()
        let graph = try StateGraph.load(config: config)
        var explorer = ModelExplorer(graph: graph, bounds: bounds, reclamation: DoubleBounce())
        let started = Date()
        let unreachable = try explorer.exploreAll()
        let seconds = Date().timeIntervalSince(started)
        let report = """
            model-based: \(config): states \(explorer.visitedNodes.count)/\(graph.nodeCount) \
            (\(explorer.comparedNodes.count) compared), \
            transitions \(explorer.coveredEdges.count)/\(graph.edgeCount), \
            \(explorer.runs) runs, \(explorer.steps) steps, \(String(format: "%.1f", seconds)) s \
            (graph: \(String(format: "%.1f", started.timeIntervalSince(loading))) s)
            """
        print(report)
        #expect(unreachable.isEmpty, "transitions the implementation never took: \(unreachable.count)")
        #expect(explorer.visitedNodes.count == graph.nodeCount, "\(report)")
        #expect(explorer.coveredEdges.count == graph.edgeCount, "\(report)")
    }

    @Test("negative control: without the double bounce the implementation leaves the spec")
    func withoutDoubleBounce() throws {
        let (config, bounds) = Self.oneContext
        var explorer = ModelExplorer(
            graph: try StateGraph.load(config: config), bounds: bounds, reclamation: FreeWithoutGracePeriod())
        do {
            _ = try explorer.exploreAll()
            Issue.record("the variant without the double bounce passed the model-based test")
        } catch {
            let message = String(describing: error)
            print("model-based: negative control rejected: \(message.prefix { $0 != "\n" })")
            #expect(message.contains("FreeRcuCallback"), "failed for another reason: \(message)")
        }
    }
}
}
