import ArgumentParser
import Foundation
import TopiaryPipeline

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "run", abstract: "Run a pipeline: every stage of pipeline.yml, reports and models in one output folder.")

    @Argument(help: "The pipeline file.") var pipeline: String = "pipeline.yml"
    @Option(help: "Output folder (default: the pipeline's `out`, else out/<pipeline name>).") var out: String?
    @Flag(help: "Continue an interrupted run in the same output folder from its last finished stage.") var resume = false
    @Flag(name: .customLong("dry-run"), help: "Validate and list the stages without running them.") var dryRun = false
    @Option(name: .customLong("set"), parsing: .singleValue, help: "Override a value: --set stages.1.prune.target.flops=0.4 (repeatable).") var settings: [String] = []

    func run() throws {
        try runReportingErrors {
            let spec = try PipelineSpec.load(pipeline, overrides: settings)
            let name = ((pipeline as NSString).lastPathComponent as NSString).deletingPathExtension
            var options = PipelineRunner.Options(outDir: out ?? spec.out ?? "out/\(name)")
            options.resume = resume
            options.dryRun = dryRun
            let printer = ProgressPrinter()
            options.progress = printer.update
            try PipelineRunner.run(spec, options: options)
        }
    }
}

struct ValidateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "validate", abstract: "Check a pipeline file (keys, types, files, targets, stage order) without running it.")

    @Argument(help: "The pipeline file.") var pipeline: String = "pipeline.yml"
    @Option(name: .customLong("set"), parsing: .singleValue, help: "Override a value, as for run.") var settings: [String] = []

    func run() throws {
        try runReportingErrors {
            let spec = try PipelineSpec.load(pipeline, overrides: settings)
            _ = try PipelineRunner.validate(spec)
            print("\(pipeline): valid, \(spec.stages.count) stage(s)")
        }
    }
}
