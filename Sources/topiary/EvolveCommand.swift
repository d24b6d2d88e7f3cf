import ArgumentParser
import Foundation
import TopiaryEngine
import TopiaryIR
import TopiaryPipeline
import TopiaryPruning

struct EvolveCriterionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "evolve-criterion",
        abstract: "Search for a pruning formula by genetic programming and print the best ones with their scores."
    )

    @Argument(help: "The ONNX model.") var model: String
    @Option(help: "Training data used to score formulas (NPZ or IDX).") var data: String
    @Option(help: "Fraction of FLOPs kept when scoring a formula.") var flops = 0.5
    @Option var population = 12
    @Option var generations = 5
    @Option var seed: UInt64 = 0
    @Option(help: "How many formulas to print.") var top = 5
    @Flag(name: .customLong("no-calibration"), help: "Leave out taylor and grad_l2 (no gradients needed).") var noCalibration = false

    func validate() throws {
        guard flops > 0 && flops <= 1 else { throw ValidationError("--flops must be in (0, 1]") }
        guard population >= 4, generations >= 1 else { throw ValidationError("--population must be ≥ 4 and --generations ≥ 1") }
    }

    func run() throws {
        try runReportingErrors {
            let m = try ModelFile.load(model)
            try Pruner.prepare(m)
            var o = CriterionEvolution.Options()
            o.target = .flops(flops)
            o.population = population
            o.generations = generations
            o.seed = seed
            o.useCalibration = !noCalibration
            let best = try CriterionEvolution.run(model: m, data: try Dataset.load(data), options: o) { gen, top in
                FileHandle.standardError.write(Data(String(format: "generation %d/%d: best %.4f  %@\n", gen, generations, top.first?.score ?? 0, top.first?.formula.text ?? "").utf8))
            }
            print("score   formula (top-1 of the masked, recalibrated model at \(flops) of the FLOPs)")
            for s in best.prefix(top) { print(String(format: "%.4f  expr: %@", s.score, s.formula.text)) }
        }
    }
}
