/// A TLA+ value as TLC prints it: enough of the syntax to read the states
/// of a `-dump dot` state graph and to write traces.
enum TLAValue: Hashable, CustomStringConvertible {
    case int(Int)
    case string(String)
    case bool(Bool)
    /// A model value (`c1`, `NoContext`).
    case model(String)
    case set(Set<TLAValue>)
    case tuple([TLAValue])
    /// A function; records (`[a |-> 1]`) are functions from strings.
    case function([TLAValue: TLAValue])

    static func record(_ fields: [String: TLAValue]) -> TLAValue {
        .function(Dictionary(uniqueKeysWithValues: fields.map { (.string($0.key), $0.value) }))
    }

    subscript(field: String) -> TLAValue? {
        guard case .function(let map) = self else { return nil }
        return map[.string(field)]
    }

    subscript(key: TLAValue) -> TLAValue? {
        guard case .function(let map) = self else { return nil }
        return map[key]
    }

    var intValue: Int? { if case .int(let value) = self { value } else { nil } }
    var stringValue: String? { if case .string(let value) = self { value } else { nil } }
    var boolValue: Bool? { if case .bool(let value) = self { value } else { nil } }
    var setValue: Set<TLAValue>? { if case .set(let value) = self { value } else { nil } }

    var description: String {
        switch self {
        case .int(let value): String(value)
        case .string(let value): "\"\(value)\""
        case .bool(let value): value ? "TRUE" : "FALSE"
        case .model(let name): name
        case .set(let elements): "{" + elements.map(\.description).sorted().joined(separator: ", ") + "}"
        case .tuple(let elements): "<<" + elements.map(\.description).joined(separator: ", ") + ">>"
        case .function(let map):
            if map.keys.allSatisfy({ $0.stringValue != nil }) {
                "[" + map.map { "\($0.key.stringValue!) |-> \($0.value)" }.sorted().joined(separator: ", ") + "]"
            } else {
                "(" + map.map { "\($0.key) :> \($0.value)" }.sorted().joined(separator: " @@ ") + ")"
            }
        }
    }
}

/// Reads TLC's printed values: integers, strings, booleans, model values,
/// sets, tuples, records, and functions written `(a :> x @@ b :> y)`.
struct TLAParser {
    enum Failure: Error, CustomStringConvertible {
        case unexpected(String, at: Int)
        var description: String {
            switch self { case .unexpected(let what, let offset): "TLA value: unexpected \(what) at \(offset)" }
        }
    }

    private let bytes: [UInt8]
    private var index = 0

    init(_ text: String) { bytes = Array(text.utf8) }

    /// The variables of a state printed as `/\ name = value` conjuncts.
    static func parseState(_ text: String) throws -> [String: TLAValue] {
        var parser = TLAParser(text)
        var variables: [String: TLAValue] = [:]
        while true {
            parser.skipSpace()
            if parser.index == parser.bytes.count { return variables }
            try parser.expect("/\\")
            parser.skipSpace()
            let name = parser.identifier()
            try parser.expect("=")
            variables[name] = try parser.value()
        }
    }

    private mutating func skipSpace() {
        while index < bytes.count, bytes[index] == 0x20 || bytes[index] == 0x0A || bytes[index] == 0x09 { index += 1 }
    }

    private func peek(_ literal: String) -> Bool {
        let expected = Array(literal.utf8)
        return index + expected.count <= bytes.count && Array(bytes[index..<index + expected.count]) == expected
    }

    private mutating func accept(_ literal: String) -> Bool {
        skipSpace()
        guard peek(literal) else { return false }
        index += literal.utf8.count
        return true
    }

    private mutating func expect(_ literal: String) throws {
        guard accept(literal) else { throw Failure.unexpected("text, wanted \(literal)", at: index) }
    }

    private mutating func identifier() -> String {
        skipSpace()
        let start = index
        while index < bytes.count, bytes[index] == 0x5F || (bytes[index] >= 0x30 && bytes[index] <= 0x39)
            || (bytes[index] | 0x20 >= 0x61 && bytes[index] | 0x20 <= 0x7A) {
            index += 1
        }
        return String(decoding: bytes[start..<index], as: UTF8.self)
    }

    private mutating func list(until end: String) throws -> [TLAValue] {
        var elements: [TLAValue] = []
        if accept(end) { return elements }
        repeat { elements.append(try value()) } while accept(",")
        try expect(end)
        return elements
    }

    private mutating func value() throws -> TLAValue {
        skipSpace()
        if accept("<<") { return .tuple(try list(until: ">>")) }
        if accept("{") { return .set(Set(try list(until: "}"))) }
        if accept("[") {
            var fields: [String: TLAValue] = [:]
            repeat {
                let name = identifier()
                try expect("|->")
                fields[name] = try value()
            } while accept(",")
            try expect("]")
            return .record(fields)
        }
        if accept("(") {
            var map: [TLAValue: TLAValue] = [:]
            repeat {
                let key = try value()
                try expect(":>")
                map[key] = try value()
            } while accept("@@")
            try expect(")")
            return .function(map)
        }
        if accept("\"") {
            let start = index
            while index < bytes.count, bytes[index] != 0x22 { index += 1 }
            let text = String(decoding: bytes[start..<index], as: UTF8.self)
            try expect("\"")
            return .string(text)
        }
        if index < bytes.count, bytes[index] == 0x2D || (bytes[index] >= 0x30 && bytes[index] <= 0x39) {
            let start = index
            index += 1
            while index < bytes.count, bytes[index] >= 0x30 && bytes[index] <= 0x39 { index += 1 }
            return .int(Int(String(decoding: bytes[start..<index], as: UTF8.self))!)
        }
        let name = identifier()
        switch name {
        case "": throw Failure.unexpected("character", at: index)
        case "TRUE": return .bool(true)
        case "FALSE": return .bool(false)
        default: return .model(name)
        }
    }
}
