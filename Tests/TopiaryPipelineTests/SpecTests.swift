import Foundation
import Testing
@testable import TopiaryPipeline

@Suite struct SpecTests {
    /// Writes `text` to a temporary pipeline file next to a copy-free model path and parses it.
    func parse(_ text: String, overrides: [String] = [], env: [String: String] = [:]) throws -> PipelineSpec {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("topiary-spec-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: dir.appendingPathComponent("m.onnx").path, contents: Data([1]))
        let file = dir.appendingPathComponent("p.yml").path
        try text.write(toFile: file, atomically: true, encoding: .utf8)
        return try PipelineSpec.load(file, overrides: overrides, environment: env)
    }

    @Test func pathsResolveAgainstThePipelineFolder() throws {
        let spec = try parse("model: m.onnx\nstages:\n  - report: {name: a}\n")
        #expect(spec.model.hasSuffix("/m.onnx"))
        #expect(FileManager.default.fileExists(atPath: spec.model))
        #expect(spec.stages.count == 1)
    }

    @Test func unknownKeySuggestsTheNearestOne() throws {
        #expect {
            _ = try parse("model: m.onnx\nsed: 3\nstages: [{report: {}}]\n")
        } throws: { e in
            let d = "\(e)"
            return d.contains(":2:1: unknown key 'sed' (did you mean 'seed'?)")
        }
    }

    @Test func setOverridesAndEnvironmentExpand() throws {
        let spec = try parse("model: ${DIR}.onnx\nseed: 1\nstages: [{report: {name: x}}]\n", overrides: ["seed=7"], env: ["DIR": "m"])
        #expect(spec.seed == 7)
        #expect(spec.model.hasSuffix("m.onnx"))
    }

    @Test func resolvedYAMLWritesNumbersAsPeopleDo() {
        let text = YAMLText.emit(["a": 0.5, "b": [["k": 2]], "c": "x y", "d": true, "e": [String]()] as [String: Any])
        #expect(text == "a: 0.5\nb:\n  - k: 2\nc: \"x y\"\nd: true\ne: []\n")
    }

    @Test func stageNeedsExactlyOneKind() {
        #expect(throws: SpecError.self) { _ = try parse("model: m.onnx\nstages:\n  - {report: {}, export: {}}\n") }
    }
}
