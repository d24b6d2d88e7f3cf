import ArgumentParser
import Foundation
import TopiaryIR

/// The `topiary` command: subcommands parse their arguments, call the libraries and print.
@main
struct Topiary: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topiary",
        abstract: "Make trained neural networks smaller: analyse, convert and prune ONNX models.",
        version: "0.1.0",
        subcommands: [RunCommand.self, ValidateCommand.self, ReportCommand.self, InspectCommand.self, ConvertCommand.self, PruneCommand.self, EvolveCriterionCommand.self, TrainCommand.self, EvalCommand.self, InferCommand.self]
    )
}

/// Runs `body`, turning library errors into a one-line message on stderr and exit status 1.
func runReportingErrors(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let e as ExitCode {
        throw e
    } catch {
        FileHandle.standardError.write(Data("topiary: error: \(error)\n".utf8))
        throw ExitCode(1)
    }
}

/// Writes text to `path` atomically (temporary file, then rename).
func writeTextAtomically(_ text: String, to path: String) throws {
    let url = URL(fileURLWithPath: path)
    let dir = url.deletingLastPathComponent().path
    var isDir: ObjCBool = false
    guard FileManager.default.fileExists(atPath: dir, isDirectory: &isDir), isDir.boolValue else {
        throw FileError(path: path, error: IRError.io("the output folder '\(dir)' does not exist"))
    }
    try Data(text.utf8).write(to: url, options: .atomic)
}
