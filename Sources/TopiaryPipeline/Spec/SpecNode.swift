import Foundation
import Yams

/// An error in a pipeline file, located at file:line:column.
public struct SpecError: Error, CustomStringConvertible {
    public let file: String
    public let line: Int
    public let column: Int
    public let message: String

    public var description: String { "\(file):\(line):\(column): \(message)" }
}

/// A YAML node with where it came from (file, line, column) and its path in the document
/// (`stages[1].prune.target`), giving typed values or errors that point at the spot.
public struct SpecNode {
    let node: Yams.Node
    let file: String
    let path: String
    /// Where a value set on the command line came from, instead of a line in the file.
    let origin: String?

    init(_ node: Yams.Node, file: String, path: String = "", origin: String? = nil) {
        self.node = node
        self.file = file
        self.path = path
        self.origin = origin
    }

    var line: Int { node.mark?.line ?? 1 }
    var column: Int { node.mark?.column ?? 1 }

    func error(_ message: String) -> SpecError {
        let place = path.isEmpty ? "" : "\(path): "
        if let origin { return SpecError(file: file, line: line, column: column, message: "\(place)\(message) (from \(origin))") }
        return SpecError(file: file, line: line, column: column, message: place + message)
    }

    func child(_ key: String, _ n: Yams.Node) -> SpecNode {
        SpecNode(n, file: file, path: path.isEmpty ? key : "\(path).\(key)", origin: origin)
    }

    // MARK: typed access

    /// The mapping's entries; an error unless this is a mapping. Keys outside `allowed` are errors.
    func mapping(allowed: [String]) throws -> [String: SpecNode] {
        guard let m = node.mapping else { throw error("expected a mapping with keys \(allowed.joined(separator: ", ")), found \(kind)") }
        var out: [String: SpecNode] = [:]
        for (k, v) in m {
            guard let key = k.string else { throw SpecNode(k, file: file, path: path).error("keys must be strings") }
            guard allowed.contains(key) else {
                let hint = allowed.min { distance($0, key) < distance($1, key) }.map { " (did you mean '\($0)'?)" } ?? ""
                throw SpecNode(k, file: file, path: path).error("unknown key '\(key)'\(hint); expected one of \(allowed.joined(separator: ", "))")
            }
            out[key] = child(key, v)
        }
        return out
    }

    func sequence() throws -> [SpecNode] {
        guard let s = node.sequence else { throw error("expected a list, found \(kind)") }
        return s.enumerated().map { i, n in SpecNode(n, file: file, path: "\(path)[\(i)]", origin: origin) }
    }

    func string() throws -> String {
        guard let s = node.scalar else { throw error("expected a string, found \(kind)") }
        return s.string
    }

    func int() throws -> Int {
        guard let v = node.int else { throw error("expected an integer, found \(describe)") }
        return v
    }

    func double() throws -> Double {
        guard node.scalar != nil, let v = node.float ?? node.int.map(Double.init) else { throw error("expected a number, found \(describe)") }
        return v
    }

    func bool() throws -> Bool {
        guard let v = node.bool else { throw error("expected true or false, found \(describe)") }
        return v
    }

    func strings() throws -> [String] { try sequence().map { try $0.string() } }

    func doubles() throws -> [Double] { try sequence().map { try $0.double() } }

    var kind: String {
        switch node {
        case .mapping: return "a mapping"
        case .sequence: return "a list"
        case .scalar: return "'\(node.string ?? "")'"
        default: return "an alias"
        }
    }

    var describe: String { kind }

    private func distance(_ a: String, _ b: String) -> Int {
        let x = Array(a), y = Array(b)
        var row = Array(0...y.count)
        for i in 1...max(x.count, 1) where i <= x.count {
            var prev = row[0]
            row[0] = i
            for j in 1...max(y.count, 1) where j <= y.count {
                let cur = row[j]
                row[j] = min(row[j] + 1, row[j - 1] + 1, prev + (x[i - 1] == y[j - 1] ? 0 : 1))
                prev = cur
            }
        }
        return row[y.count]
    }
}

/// Optional typed fields of a mapping.
extension Dictionary where Key == String, Value == SpecNode {
    func string(_ k: String) throws -> String? { try self[k]?.string() }
    func int(_ k: String) throws -> Int? { try self[k]?.int() }
    func double(_ k: String) throws -> Double? { try self[k]?.double() }
    func bool(_ k: String) throws -> Bool? { try self[k]?.bool() }
    func float(_ k: String) throws -> Float? { try self[k].map { Float(try $0.double()) } }
}
