import Foundation

/// The reachable state graph of a spec, read from TLC's `-dump dot` file.
struct StateGraph {
    /// Node `i`'s state, parsed on first use.
    private(set) var labels: [String]
    private var parsed: [[String: TLAValue]?]
    /// Outgoing edges of each node (targets), self-loops dropped: they are
    /// stuttering steps, which change nothing to check.
    let successors: [[Int]]
    let initial: [Int]
    var edgeCount: Int { successors.reduce(0) { $0 + $1.count } }
    var nodeCount: Int { labels.count }

    /// Makes (or reuses) the graph of `Spec/<module>.tla` under
    /// `Spec/<config>.cfg` with `Spec/state-graph.sh` and reads it.
    static func load(config: String, module: String = "MBTLifecycle") throws -> StateGraph {
        let script = repositoryRoot.appendingPathComponent("Spec/state-graph.sh").path
        let output = try runProcess(script, [config, module])
        guard output.status == 0 else {
            throw ConformanceFailure("state-graph.sh \(config) failed:\n\(output.standardError)")
        }
        let path = output.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines)
        return try StateGraph(dot: String(contentsOfFile: path, encoding: .utf8))
    }

    init(dot: String) throws {
        var index: [Int64: Int] = [:]
        var labels: [String] = []
        var initial: [Int] = []
        var edges: [(Int64, Int64)] = []
        func node(_ fingerprint: Int64) -> Int {
            if let existing = index[fingerprint] { return existing }
            index[fingerprint] = labels.count
            labels.append("")
            return labels.count - 1
        }
        for line in dot.split(separator: "\n", omittingEmptySubsequences: true) {
            guard let first = line.first, first == "-" || first.isNumber else { continue }
            let parts = line.split(separator: " ", maxSplits: 3)
            if parts.count >= 3, parts[1] == "->", let from = Int64(parts[0]), let to = Int64(parts[2]) {
                edges.append((from, to))
            } else if let fingerprint = Int64(parts[0]), let start = line.range(of: "[label=\"") {
                let body = line[start.upperBound...]
                guard let end = body.range(of: "\"", options: .backwards) else { continue }
                let id = node(fingerprint)
                labels[id] = Self.unescape(body[..<end.lowerBound])
                if body[end.upperBound...].contains("style = filled"), !initial.contains(id) { initial.append(id) }
            }
        }
        var successors = Array(repeating: [Int](), count: labels.count)
        for (from, to) in edges {
            let source = node(from), target = node(to)
            if source != target, !successors[source].contains(target) { successors[source].append(target) }
        }
        guard labels.count == successors.count, !labels.contains(""), !initial.isEmpty else {
            throw ConformanceFailure("state graph: a node without a label, or no initial state")
        }
        self.labels = labels
        self.successors = successors
        self.initial = initial
        parsed = Array(repeating: nil, count: labels.count)
    }

    /// The variables of node `id`.
    mutating func state(_ id: Int) -> [String: TLAValue] {
        if let state = parsed[id] { return state }
        do {
            let state = try TLAParser.parseState(labels[id])
            parsed[id] = state
            return state
        } catch {
            fatalError("state graph: node \(id) does not parse (\(error)):\n\(labels[id])")
        }
    }

    /// Undoes dot's escaping of a label: `\\`, `\"` and `\n`.
    private static func unescape(_ text: Substring) -> String {
        var result = ""
        result.reserveCapacity(text.count)
        var escaped = false
        for character in text {
            if escaped {
                result.append(character == "n" ? "\n" : character)
                escaped = false
            } else if character == "\\" {
                escaped = true
            } else {
                result.append(character)
            }
        }
        return result
    }
}

extension StateGraph {
    /// An edge of the graph, by node index.
    struct Edge: Hashable { let from: Int, to: Int }

    /// Shortest routes through the graph, breadth first. The marks are
    /// reused from one search to the next: the explorers search a graph of
    /// up to 92,560 states thousands of times, and must not clear an array
    /// per search.
    struct PathSearch {
        private let successors: [[Int]]
        private var parent: [Int]
        private var mark: [Int]
        private var searches = 0

        init(_ graph: StateGraph) { self.init(successors: graph.successors) }

        /// A search of another graph: `successors[node]` are `node`'s
        /// successors (an explorer's own graph over the spec's, say).
        init(successors: [[Int]]) {
            self.successors = successors
            parent = Array(repeating: 0, count: successors.count)
            mark = Array(repeating: 0, count: successors.count)
        }

        /// The shortest path (of edges) from `start` to a node where
        /// `goal` holds.
        mutating func path(from start: Int, to goal: (Int) -> Bool) -> [Edge]? {
            searches += 1
            mark[start] = searches
            var frontier = [start]
            while !frontier.isEmpty {
                var next: [Int] = []
                for node in frontier {
                    if goal(node) {
                        var edges: [Edge] = []
                        var current = node
                        while current != start {
                            edges.append(Edge(from: parent[current], to: current))
                            current = parent[current]
                        }
                        return edges.reversed()
                    }
                    for successor in successors[node] where mark[successor] != searches {
                        mark[successor] = searches
                        parent[successor] = node
                        next.append(successor)
                    }
                }
                frontier = next
            }
            return nil
        }
    }
}

struct ConformanceFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// The package's root directory (this file is Tests/ConformanceTests/…).
let repositoryRoot = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

/// Runs `executable` with `arguments` to completion.
func runProcess(_ executable: String, _ arguments: [String]) throws
    -> (status: Int32, standardOutput: String, standardError: String)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    let output = Pipe(), errors = Pipe()
    process.standardOutput = output
    process.standardError = errors
    try process.run()
    // Read before waiting, so a full pipe cannot stall the child.
    let outputData = output.fileHandleForReading.readDataToEndOfFile()
    let errorData = errors.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: outputData, as: UTF8.self),
            String(decoding: errorData, as: UTF8.self))
}
