import ArgumentParser
import TopiaryIR
import TopiaryPipeline

struct ReportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "report",
        abstract: "Print a model's parameters, MACs, FLOPs and activation memory (batch 1)."
    )

    @Argument(help: "The ONNX model.") var model: String
    @Flag(help: "Print the report as JSON (schema topiary.report/1).") var json = false
    @Flag(help: "Print the report as Markdown.") var markdown = false
    @Flag(name: .customLong("per-layer"), help: "Add a row per node.") var perLayer = false

    func validate() throws {
        if json && markdown { throw ValidationError("choose one of --json and --markdown") }
    }

    func run() throws {
        try runReportingErrors {
            let m = try ModelFile.load(model)
            let report = try ModelReport(model: m, path: model)
            if json {
                print(try ReportRenderer.json(report))
            } else if markdown {
                print(ReportRenderer.markdown(report, perLayer: perLayer), terminator: "")
            } else {
                print(ReportRenderer.text(report, perLayer: perLayer), terminator: "")
            }
        }
    }
}
