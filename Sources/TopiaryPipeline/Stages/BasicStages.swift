import Foundation
import TopiaryEngine
import TopiaryIR

/// `report: {name, compare}`: costs of the current model, kept under `name` for later stages and
/// for report.json; `compare` names an earlier report to print the change against.
public struct ReportStage: PipelineStage {
    public static let key = "report"
    public static let keys = ["name", "compare"]
    let name: String
    let compare: String?

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        name = try fields.string("name") ?? "report\(context.index + 1)"
        compare = try fields.string("compare")
        if let compare, !context.reportNames.contains(compare) {
            throw fields["compare"]!.error("no earlier report is named '\(compare)' (earlier: \(context.reportNames.sorted().joined(separator: ", ")))")
        }
        guard !context.reportNames.contains(name) else { throw (fields["name"] ?? node).error("a report named '\(name)' already exists") }
        context.reportNames.insert(name)
    }

    public var resolved: [String: Any] { compare.map { ["name": name, "compare": $0] } ?? ["name": name] }
    public var label: String { "report \(name)" }

    public func run(_ run: RunContext, index: Int) throws {
        let (cost, _) = try CostModel.analyse(run.model)
        run.record.reports[name] = ReportSnapshot(totals: cost.totals, nodes: cost.nodes)
        var line = "\(name): params \(ReportRenderer.count(cost.totals.params)), MACs \(ReportRenderer.count(cost.totals.macs)), FLOPs \(ReportRenderer.count(cost.totals.flops))"
        if let compare, let base = run.record.reports[compare]?.totals {
            line += String(format: " (%.3f× params, %.3f× FLOPs of '%@')", Double(cost.totals.params) / Double(max(base.params, 1)),
                           Double(cost.totals.flops) / Double(max(base.flops, 1)), compare)
        }
        run.log(line)
    }
}

/// `convert: {fold_bn, fp16}`.
public struct ConvertStage: PipelineStage {
    public static let key = "convert"
    public static let keys = ["fold_bn", "fp16"]
    let foldBN: Bool
    let fp16: Bool

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        foldBN = try fields.bool("fold_bn") ?? false
        fp16 = try fields.bool("fp16") ?? false
        guard foldBN || fp16 else { throw node.error("convert does nothing: set fold_bn or fp16") }
    }

    public var resolved: [String: Any] { ["fold_bn": foldBN, "fp16": fp16] }
    public var label: String { "convert" + (foldBN ? " fold_bn" : "") + (fp16 ? " fp16" : "") }

    public func run(_ run: RunContext, index: Int) throws {
        if foldBN { run.log("folded \(try FoldBatchNorm.run(run.model)) BatchNormalization node(s)") }
        if fp16 { try ConvertFloat16.run(run.model) }
    }
}

/// `evaluate: {name, data}`: top-1, top-5 and loss of the current model on the validation (or
/// training) data.
public struct EvaluateStage: PipelineStage {
    public static let key = "evaluate"
    public static let keys = ["name", "data", "batch"]
    let name: String
    let data: String
    let batch: Int

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        name = try fields.string("name") ?? "evaluate\(context.index + 1)"
        data = try fields.string("data") ?? "val"
        batch = try fields.int("batch") ?? 64
        guard data == "val" || data == "train" else { throw fields["data"]!.error("data must be val or train") }
        let declared = data == "val" ? context.spec.val : context.spec.train
        guard declared else { throw node.error("evaluate needs data.\(data) in the pipeline") }
        guard batch > 0 else { throw fields["batch"]!.error("batch must be positive") }
    }

    public var resolved: [String: Any] { ["name": name, "data": data, "batch": batch] }
    public var label: String { "evaluate \(name)" }

    public func run(_ run: RunContext, index: Int) throws {
        let d = try run.dataset(data)
        let m = try Evaluator.evaluate(model: run.model, data: d, batch: batch, threads: run.spec.threads)
        let (cost, _) = try CostModel.analyse(run.model)
        run.record.evaluations.append(.init(stage: index, name: name, data: data, top1: m.top1, top5: m.top5, loss: m.loss, samples: m.samples,
                                            flops: cost.totals.flops, params: cost.totals.params))
        run.log(String(format: "%@: top-1 %.4f, top-5 %.4f, loss %.4f on %d %@ samples", name, m.top1, m.top5, m.loss, m.samples, data))
    }
}

/// `export: {path, external_data}`: writes the current model (path relative to the output folder).
public struct ExportStage: PipelineStage {
    public static let key = "export"
    public static let keys = ["path", "external_data"]
    let path: String
    let externalData: String?

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        path = try fields.string("path") ?? "model.onnx"
        externalData = try fields.string("external_data")
        guard path.hasSuffix(".onnx") else { throw (fields["path"] ?? node).error("the exported model's path should end in .onnx") }
        if let e = externalData, e.contains("/") { throw fields["external_data"]!.error("external_data is a file name beside the model") }
    }

    public var resolved: [String: Any] { externalData.map { ["path": path, "external_data": $0] } ?? ["path": path] }
    public var label: String { "export \(path)" }

    public func run(_ run: RunContext, index: Int) throws {
        let target = run.outputPath(path)
        try FileManager.default.createDirectory(atPath: (target as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try ModelFile.save(run.model, to: target, externalData: externalData.map { .file($0, threshold: 1024) } ?? .inline)
        run.record.exports.append(path)
        run.log("wrote \(target)")
    }
}
