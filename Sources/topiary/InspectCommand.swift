import ArgumentParser
import TopiaryIR
import TopiaryPipeline
import TopiaryPruning

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a model's opsets, inputs and outputs with shapes, op histogram, and the ops Topiary cannot analyse."
    )

    @Argument(help: "The ONNX model.") var model: String
    @Flag(help: "List the dependency groups: channels that must be pruned together.") var groups = false
    @Flag(help: "With --groups: print them as JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let m = try ModelFile.load(model)
            if groups {
                try Pruner.prepare(m)
                let analysis = try DependencyAnalysis(model: m)
                print(json ? try GroupListing(analysis).json() : GroupListing(analysis).text(), terminator: "")
                return
            }
            let shapes = try ShapeInference.run(m)
            print(model)
            print("  IR version  \(m.irVersion)")
            print("  producer    \([m.producerName, m.producerVersion].filter { !$0.isEmpty }.joined(separator: " "))")
            print("  opsets      " + m.opsetImports.map { "\($0.domain.isEmpty ? "ai.onnx" : $0.domain) \($0.version)" }.joined(separator: ", "))
            print("  nodes       \(m.graph.nodes.count)   initializers \(m.graph.initializers.count)")
            for i in m.graph.modelInputs { print("  input       \(i.name): \((shapes.type(of: i.name) ?? i.type.tensorType)?.description ?? "?")") }
            for o in m.graph.outputs { print("  output      \(o.name): \((shapes.type(of: o.name) ?? o.type.tensorType)?.description ?? "?")") }
            print("\nops:")
            var histogram: [String: Int] = [:]
            for n in m.graph.nodes { histogram[(n.isDefaultDomain ? "" : n.domain + "::") + n.opType, default: 0] += 1 }
            let width = histogram.keys.map(\.count).max() ?? 0
            for (op, n) in histogram.sorted(by: { ($0.value, $1.key) > ($1.value, $0.key) }) {
                print("  \(op.padding(toLength: width, withPad: " ", startingAt: 0))  \(n)")
            }
            if shapes.unanalysed.isEmpty {
                print("\nevery node analysed")
            } else {
                let ops = Set(shapes.unanalysed.map(\.opType)).sorted()
                print("\nnot analysed: \(shapes.unanalysed.count) node(s), ops \(ops.joined(separator: ", "))")
                for u in shapes.unanalysed { print("  \(u.node) (\(u.opType)): \(u.reason)") }
            }
        }
    }
}
