import Foundation
import TopiaryEngine
import TopiaryIR
import TopiaryPruning
import Yams

/// Why a stage failed, with the stage named.
public struct StageFailure: Error, CustomStringConvertible {
    public let index: Int
    public let label: String
    public let underlying: Error
    public var description: String { "stage \(index + 1) (\(label)) failed: \(underlying)" }
}

/// What the state folder records after each finished stage, for `--resume`.
struct Progress: Codable {
    var completed: Int
    var pipelineDigest: String
    var hasTeacher: Bool
    /// `RunContext.teacherChannels` (absent in snapshots from before feature distillation).
    var teacherChannels: [String: [Int]]?
    var record: RunRecord
}

/// Runs a pipeline: validation, then each stage on the current model, a state snapshot after each
/// finished stage, and the reports at the end. Everything goes under one output folder.
public enum PipelineRunner {
    public struct Options {
        public var outDir: String
        public var resume = false
        public var dryRun = false
        public var log: (String) -> Void = { FileHandle.standardOutput.write(Data(($0 + "\n").utf8)) }
        public var progress: ((TrainingProgress) -> Void)?

        public init(outDir: String) { self.outDir = outDir }
    }

    /// Checks everything that can be checked before the first stage: the model loads, and the first
    /// pruning target is reachable on it.
    public static func validate(_ spec: PipelineSpec) throws -> Model {
        let model = try ModelFile.load(spec.model)
        if let first = spec.stages.first(where: { $0 is PruneStage }) as? PruneStage,
           !spec.stages.prefix(while: { !($0 is PruneStage) }).contains(where: { $0 is FinetuneStage || $0 is ConvertStage }) {
            try first.checkReachable(on: model, seed: spec.seed)
        }
        return model
    }

    /// The pipeline with defaults filled in, as YAML (paths absolute, so the file works from the
    /// output folder).
    public static func resolvedYAML(_ spec: PipelineSpec) throws -> String {
        let cwd = FileManager.default.currentDirectoryPath
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : (cwd as NSString).appendingPathComponent(p) }
        var data: [String: Any] = [:]
        if let t = spec.data.train { data["train"] = absolute(t) }
        if let v = spec.data.val { data["val"] = absolute(v) }
        if !spec.data.mean.isEmpty { data["mean"] = spec.data.mean.map(Double.init) }
        if !spec.data.std.isEmpty { data["std"] = spec.data.std.map(Double.init) }
        let stages: [[String: Any]] = spec.stages.map { [type(of: $0).key: $0.resolved] }
        let doc: [String: Any] = ["model": absolute(spec.model), "data": data, "seed": Int(spec.seed), "threads": spec.threads, "stages": stages]
        return YAMLText.emit(doc)
    }

    @discardableResult
    public static func run(_ spec: PipelineSpec, options: Options) throws -> RunRecord {
        let fm = FileManager.default
        let start = Date()
        let original = try validate(spec)
        let resolved = try resolvedYAML(spec)
        let digest = String(resolved.utf8.reduce(UInt64(5381)) { ($0 &* 33) &+ UInt64($1) }, radix: 16)
        if options.dryRun {
            options.log("pipeline \(spec.file) is valid; \(spec.stages.count) stage(s):")
            for (i, s) in spec.stages.enumerated() { options.log("  \(i + 1). \(s.label)") }
            return RunRecord(pipeline: spec.file, model: spec.model, seed: spec.seed)
        }
        try fm.createDirectory(atPath: options.outDir + "/state", withIntermediateDirectories: true)
        let logURL = URL(fileURLWithPath: options.outDir + "/run.log")
        if !fm.fileExists(atPath: logURL.path) || !options.resume { try Data().write(to: logURL) }
        let logHandle = try FileHandle(forWritingTo: logURL)
        logHandle.seekToEndOfFile()
        defer { try? logHandle.close() }
        let log: (String) -> Void = { line in
            options.log(line)
            logHandle.write(Data((ISO8601DateFormatter().string(from: Date()) + " " + line + "\n").utf8))
        }
        try resolved.write(toFile: options.outDir + "/pipeline.resolved.yml", atomically: true, encoding: .utf8)

        var first = 0
        var model = original
        var record = RunRecord(pipeline: spec.file, model: spec.model, seed: spec.seed)
        var teacher: Model?
        var teacherChannels: [String: [Int]] = [:]
        let progressPath = options.outDir + "/state/progress.json"
        if options.resume, let data = fm.contents(atPath: progressPath) {
            let p = try JSONDecoder().decode(Progress.self, from: data)
            guard p.pipelineDigest == digest else {
                throw EngineError.data("\(options.outDir): the pipeline changed since the run being resumed; start a new run (or another --out)")
            }
            first = p.completed
            record = p.record
            model = try ModelFile.load(options.outDir + "/state/model.onnx")
            if p.hasTeacher { teacher = try ModelFile.load(options.outDir + "/state/teacher.onnx") }
            teacherChannels = p.teacherChannels ?? [:]
            log("resuming after stage \(first) of \(spec.stages.count)")
        } else {
            try? fm.removeItem(atPath: progressPath)
            log("running \(spec.file): \(spec.stages.count) stage(s), output in \(options.outDir)")
        }
        let context = RunContext(spec: spec, outDir: options.outDir, model: model, record: record, resume: options.resume, log: log, progress: options.progress)
        context.teacher = teacher
        context.teacherChannels = teacherChannels
        for i in first..<spec.stages.count {
            let stage = spec.stages[i]
            log("[\(i + 1)/\(spec.stages.count)] \(stage.label)")
            let t0 = Date()
            do {
                try stage.run(context, index: i)
            } catch {
                context.record.stages.append(.init(index: i, kind: type(of: stage).key, label: stage.label, settings: JSONValue(stage.resolved), status: "failed", seconds: Date().timeIntervalSince(t0)))
                context.record.seconds += Date().timeIntervalSince(start)
                try? writeReports(context.record, to: options.outDir, status: "failed: \(error)")
                log("stage \(i + 1) (\(stage.label)) failed: \(error)")
                throw StageFailure(index: i, label: stage.label, underlying: error)
            }
            let seconds = Date().timeIntervalSince(t0)
            context.record.stages.append(.init(index: i, kind: type(of: stage).key, label: stage.label, settings: JSONValue(stage.resolved), status: "done", seconds: seconds))
            log(String(format: "  done in %.2f s", seconds))
            // Snapshot for --resume: the model, the teacher, and the record so far.
            try ModelFile.save(context.model, to: options.outDir + "/state/model.onnx", externalData: .inline)
            if let t = context.teacher { try ModelFile.save(t, to: options.outDir + "/state/teacher.onnx", externalData: .inline) }
            let p = Progress(completed: i + 1, pipelineDigest: digest, hasTeacher: context.teacher != nil, teacherChannels: context.teacherChannels, record: context.record)
            try JSONEncoder().encode(p).write(to: URL(fileURLWithPath: progressPath), options: .atomic)
        }
        context.record.seconds += Date().timeIntervalSince(start)
        try writeReports(context.record, to: options.outDir, status: "done")
        log("reports: \(options.outDir)/report.json, report.md, report.html")
        return context.record
    }

    static func writeReports(_ record: RunRecord, to dir: String, status: String) throws {
        try (try StableJSON.encode(record) + "\n").write(toFile: dir + "/report.json", atomically: true, encoding: .utf8)
        try RunReportRenderer.markdown(record).write(toFile: dir + "/report.md", atomically: true, encoding: .utf8)
        try RunReportRenderer.html(record).write(toFile: dir + "/report.html", atomically: true, encoding: .utf8)
        let info = ProcessInfo.processInfo
        let run: [String: Any] = [
            "status": status, "seconds": record.seconds, "seed": Int(record.seed), "topiary": Topiary.version,
            "stages": record.stages.map { ["index": $0.index + 1, "kind": $0.kind, "label": $0.label, "status": $0.status, "seconds": $0.seconds] as [String: Any] },
            "host": ["os": info.operatingSystemVersionString, "cores": info.activeProcessorCount],
            "pipeline": record.pipeline, "model": record.model,
        ]
        let data = try JSONSerialization.data(withJSONObject: run, options: [.prettyPrinted, .sortedKeys])
        try data.write(to: URL(fileURLWithPath: dir + "/run.json"), options: .atomic)
    }
}
