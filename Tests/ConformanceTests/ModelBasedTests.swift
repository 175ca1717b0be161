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
    static let configurations: [(config: String, bounds: ModelBounds)] = [
        ("MBTLifecycle", ModelBounds(contexts: 1, threads: 2, budget: 1)),
        ("MBTLifecycleBudget", ModelBounds(contexts: 2, threads: 1, budget: 1)),
        ("MBTLifecycleTableFull", ModelBounds(contexts: 2, threads: 1, budget: 2)),
    ]

    @Test("every state and transition of the graph the implementation can take, on the implementation",
          arguments: configurations.indices)
    func coverage(configuration: Int) throws {
        let (config, bounds) = Self.configurations[configuration]
        let graph = try StateGraph.load(config: config)
        var explorer = ModelExplorer(graph: graph, bounds: bounds, reclamation: DoubleBounce())
        let started = Date()
        let unreachable = try explorer.exploreAll()
        let seconds = Date().timeIntervalSince(started)
        let notTakeable = explorer.unreachableBySpec()
        let report = """
            model-based: \(config): states \(explorer.visitedNodes.count)/\(graph.nodeCount) \
            (\(explorer.comparedNodes.count) compared), \
            transitions \(explorer.coveredEdges.count)/\(graph.edgeCount), \
            \(explorer.runs) runs, \(explorer.steps) steps, \(String(format: "%.1f", seconds)) s
            """
        print(report)
        print(explorer.describe(notTakeable, config: config))
        #expect(unreachable.isEmpty, "transitions the implementation never took: \(unreachable.count)")
        // Every state and transition is covered, or explained.
        let unexplainedNodes = Set(0..<graph.nodeCount).subtracting(explorer.visitedNodes).subtracting(notTakeable.nodes)
        let uncovered = Set(notTakeable.edges.keys).union(explorer.coveredEdges)
        #expect(unexplainedNodes.isEmpty, "states neither covered nor explained: \(unexplainedNodes.count); \(report)")
        #expect(uncovered.count == graph.edgeCount && explorer.coveredEdges.isDisjoint(with: notTakeable.edges.keys),
                "transitions neither covered nor explained, or covered though explained: \(report)")
    }

    @Test("negative control: without the double bounce the implementation leaves the spec")
    func withoutDoubleBounce() throws {
        let (config, bounds) = Self.configurations[0]
        var explorer = ModelExplorer(
            graph: try StateGraph.load(config: config), bounds: bounds, reclamation: FreeWithoutGracePeriod())
        do {
            _ = try explorer.exploreAll()
            Issue.record("the variant without the double bounce passed the model-based test")
        } catch {
            let message = String(describing: error)
            #expect(message.contains("FreeRcuCallback"), "failed for another reason: \(message)")
        }
    }
}
}
