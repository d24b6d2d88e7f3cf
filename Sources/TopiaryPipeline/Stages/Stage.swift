import Foundation
import TopiaryIR
import Yams

/// One step of a pipeline. A stage parses and checks its own settings (errors point at the
/// YAML), says what it resolved to (defaults filled in), and runs on the run's current model.
/// Adding a stage is one type and one line in `StageRegistry`.
public protocol PipelineStage {
    /// The YAML key (`prune`, `finetune` …).
    static var key: String { get }
    /// Settings it accepts.
    static var keys: [String] { get }
    /// Parses `fields` (validated against `keys`); `node` is the stage's own node for errors.
    init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws
    /// Settings with defaults filled in, for `pipeline.resolved.yml` and `report.json`.
    var resolved: [String: Any] { get }
    /// A short label for progress lines.
    var label: String { get }
    func run(_ run: RunContext, index: Int) throws
}

/// Stages by YAML key.
public enum StageRegistry {
    public static let types: [any PipelineStage.Type] = [
        ReportStage.self, ConvertStage.self, PruneStage.self, FinetuneStage.self, EvaluateStage.self, ExportStage.self, SweepStage.self,
    ]

    static func parse(_ item: SpecNode, context: inout SpecContext, allowSweep: Bool = true) throws -> any PipelineStage {
        let keys = types.map { $0.key }.filter { allowSweep || $0 != "sweep" }
        let entry = try item.mapping(allowed: keys)
        guard entry.count == 1, let (key, body) = entry.first else {
            throw item.error("each stage is a mapping with exactly one of \(keys.joined(separator: ", "))")
        }
        guard let type = types.first(where: { $0.key == key }) else { throw item.error("unknown stage '\(key)'") }
        let fields: [String: SpecNode]
        if case .scalar(let s) = body.node, s.string.isEmpty || s.string == "~" || s.string == "null" {
            fields = [:]  // `evaluate:` with no settings
        } else {
            fields = try body.mapping(allowed: type.keys)
        }
        defer { context.index += 1 }
        return try type.init(fields: fields, node: body, context: &context)
    }
}

