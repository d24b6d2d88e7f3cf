import Foundation
import TopiaryEngine
import TopiaryIR
import Yams

/// Data files of a pipeline and how to normalise them.
public struct DataSpec: Sendable {
    public var train: String?
    public var val: String?
    public var mean: [Float] = []
    public var std: [Float] = []
}

/// A parsed, validated pipeline: the model, data, seed and stages, with paths resolved against
/// the YAML file's folder.
public struct PipelineSpec {
    public let file: String
    public let directory: String
    public var model: String
    public var data = DataSpec()
    public var seed: UInt64 = 0
    public var threads = 2
    /// Output folder (resolved), unless the command line gives one.
    public var out: String?
    public var stages: [any PipelineStage] = []

    static let keys = ["model", "data", "seed", "threads", "out", "stages"]

    /// Reads and validates `path`. `overrides` are `dotted.path=value` settings applied before
    /// validation; `${VAR}` in scalars expands from `environment`.
    public static func load(_ path: String, overrides: [String] = [], environment: [String: String] = ProcessInfo.processInfo.environment) throws -> PipelineSpec {
        guard let text = FileManager.default.contents(atPath: path).map({ String(decoding: $0, as: UTF8.self) }) else {
            throw SpecError(file: path, line: 1, column: 1, message: "cannot read the pipeline file")
        }
        var root: Yams.Node
        do {
            guard let n = try Yams.compose(yaml: text) else { throw SpecError(file: path, line: 1, column: 1, message: "the pipeline file is empty") }
            root = n
        } catch let e as YamlError {
            throw yamlError(e, file: path)
        }
        root = try Expansion.expand(root, file: path, environment: environment)
        for o in overrides { root = try Override.apply(o, to: root, file: path) }
        return try PipelineSpec(root: SpecNode(root, file: path), file: path)
    }

    init(root: SpecNode, file: String) throws {
        self.file = file
        directory = (file as NSString).deletingLastPathComponent.isEmpty ? "." : (file as NSString).deletingLastPathComponent
        let fields = try root.mapping(allowed: Self.keys)
        guard let m = fields["model"] else { throw root.error("missing required key 'model'") }
        model = try Self.resolve(m, directory: directory, mustExist: true)
        if let d = fields["data"] {
            let df = try d.mapping(allowed: ["train", "val", "mean", "std"])
            data.train = try df["train"].map { try Self.resolve($0, directory: directory, mustExist: true) }
            data.val = try df["val"].map { try Self.resolve($0, directory: directory, mustExist: true) }
            data.mean = try df["mean"]?.doubles().map { Float($0) } ?? []
            data.std = try df["std"]?.doubles().map { Float($0) } ?? []
            if !data.std.isEmpty && data.std.count != data.mean.count { throw df["std"]!.error("std has \(data.std.count) values but mean has \(data.mean.count)") }
            if let bad = data.std.first(where: { $0 <= 0 }) { throw df["std"]!.error("std must be positive, found \(bad)") }
        }
        if let s = fields["seed"] {
            let v = try s.int()
            guard v >= 0 else { throw s.error("seed must be ≥ 0") }
            seed = UInt64(v)
        }
        if let t = fields["threads"] {
            threads = try t.int()
            guard threads >= 1 else { throw t.error("threads must be ≥ 1") }
        }
        out = try fields["out"].map { try Self.resolve($0, directory: directory, mustExist: false) }
        guard let stagesNode = fields["stages"] else { throw root.error("missing required key 'stages'") }
        let list = try stagesNode.sequence()
        guard !list.isEmpty else { throw stagesNode.error("a pipeline needs at least one stage") }
        var context = SpecContext(spec: DataAvailability(train: data.train != nil, val: data.val != nil), directory: directory)
        for item in list {
            stages.append(try StageRegistry.parse(item, context: &context))
        }
    }

    /// A path relative to the YAML file's folder (absolute paths stay as they are).
    static func resolve(_ node: SpecNode, directory: String, mustExist: Bool) throws -> String {
        let raw = try node.string()
        guard !raw.isEmpty else { throw node.error("empty path") }
        let path = raw.hasPrefix("/") ? raw : (directory == "." ? raw : directory + "/" + raw)
        if mustExist && !FileManager.default.fileExists(atPath: path) { throw node.error("file not found: \(path)") }
        return path
    }

    static func yamlError(_ e: YamlError, file: String) -> SpecError {
        switch e {
        case .scanner(_, let problem, let mark, _), .parser(_, let problem, let mark, _):
            return SpecError(file: file, line: mark.line, column: mark.column, message: "YAML syntax: \(problem)")
        default:
            return SpecError(file: file, line: 1, column: 1, message: "YAML: \(e)")
        }
    }
}

/// Which data a pipeline declares.
public struct DataAvailability: Sendable {
    public var train: Bool
    public var val: Bool
}

/// What parsing later stages needs to know about earlier ones.
public struct SpecContext {
    public var spec: DataAvailability
    public var directory: String
    /// Report names defined so far (a `compare` must name an earlier one).
    public var reportNames: Set<String> = []
    /// Whether a prune stage came earlier (distillation needs a model before pruning).
    public var pruned = false
    public var index = 0
}

/// `${VAR}` expansion in every scalar.
enum Expansion {
    static func expand(_ node: Yams.Node, file: String, environment: [String: String]) throws -> Yams.Node {
        switch node {
        case .scalar(var s):
            guard s.string.contains("${") else { return node }
            var out = "", rest = Substring(s.string)
            while let start = rest.range(of: "${") {
                out += rest[..<start.lowerBound]
                guard let end = rest[start.upperBound...].firstIndex(of: "}") else {
                    throw SpecNode(node, file: file).error("unterminated ${ in '\(s.string)'")
                }
                let name = String(rest[start.upperBound..<end])
                guard let value = environment[name] else { throw SpecNode(node, file: file).error("environment variable '\(name)' is not set") }
                out += value
                rest = rest[rest.index(after: end)...]
            }
            s.string = out + rest
            return .scalar(s)
        case .mapping(var m):
            for (k, v) in m { m[k] = try expand(v, file: file, environment: environment) }
            return .mapping(m)
        case .sequence(var q):
            for i in q.indices { q[i] = try expand(q[i], file: file, environment: environment) }
            return .sequence(q)
        default:
            return node
        }
    }
}

/// `--set stages.1.prune.target.flops=0.4`: replaces (or adds) one value in the document.
enum Override {
    static func apply(_ setting: String, to root: Yams.Node, file: String) throws -> Yams.Node {
        guard let eq = setting.firstIndex(of: "=") else {
            throw SpecError(file: file, line: 1, column: 1, message: "--set '\(setting)' must look like path.to.key=value")
        }
        let path = setting[..<eq].split(separator: ".").map(String.init)
        let raw = String(setting[setting.index(after: eq)...])
        guard !path.isEmpty else { throw SpecError(file: file, line: 1, column: 1, message: "--set '\(setting)' has an empty path") }
        let value = (try? Yams.compose(yaml: raw)).flatMap { $0 } ?? Yams.Node(raw)
        return try set(root, path[...], value: value, file: file, setting: setting)
    }

    private static func set(_ node: Yams.Node, _ path: ArraySlice<String>, value: Yams.Node, file: String, setting: String) throws -> Yams.Node {
        guard let key = path.first else { return value }
        switch node {
        case .mapping(var m):
            let child = m[key] ?? Yams.Node.mapping([:])
            m[Yams.Node(key)] = try set(child, path.dropFirst(), value: value, file: file, setting: setting)
            return .mapping(m)
        case .sequence(var q):
            guard let i = Int(key), i >= 0, i < q.count else {
                throw SpecNode(node, file: file).error("--set \(setting): '\(key)' is not an index of this \(q.count)-item list")
            }
            q[i] = try set(q[i], path.dropFirst(), value: value, file: file, setting: setting)
            return .sequence(q)
        default:
            throw SpecNode(node, file: file).error("--set \(setting): cannot descend into a scalar at '\(key)'")
        }
    }
}
