import ArgumentParser
import Foundation
import TopiaryIR
import TopiaryPipeline
import TopiaryPruning
import TopiaryEngine

struct PruneCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove whole channels: dependency-aware structural pruning to a ratio, FLOPs or parameter target."
    )

    @Argument(help: "The ONNX model to prune (never modified).") var input: String
    @Argument(help: "Where to write the pruned model.") var output: String
    @Option(help: "Importance criterion: \(Criteria.names.joined(separator: ", ")), or \"expr: FORMULA\" (docs/methods.md).") var criterion = "l2"
    @Option(help: "Calibration data for data-driven criteria (taylor, formulas using taylor or grad_l2): NPZ or IDX.") var data: String?
    @Option(name: .customLong("calibration-batches"), help: "Batches of 64 used for calibration.") var calibrationBatches = 4
    @Option(help: "Fraction of channels to remove (0 ≤ R < 1).") var ratio: Double?
    @Option(help: "Fraction of the FLOPs to keep (0 < F ≤ 1).") var flops: Double?
    @Option(help: "Fraction of the parameters to keep (0 < P ≤ 1).") var params: Double?
    @Option(help: "uniform (each group loses the same fraction), global (one ranking), global_cost (one ranking by score per FLOP, or per parameter, saved), hsic (per-layer ratios from HSIC with the output) or search (evolutionary width search); hsic and search need --data.") var allocation = "uniform"
    @Option(help: "With --allocation search: candidates per generation.") var population = 8
    @Option(help: "With --allocation search: generations.") var generations = 4
    @Option(name: .customLong("round-to"), help: "Keep-counts are multiples of N.") var roundTo = 1
    @Option(name: .customLong("min-channels"), help: "No group keeps fewer channels than this.") var minChannels = 1
    @Option(name: .customLong("max-group-ratio"), help: "Largest fraction of any group's channels removed (0 < R ≤ 1).") var maxGroupRatio = 1.0
    @Option(help: "With a global ranking: divide each group's scores by their max or their mean.") var normalise = "max"
    @Option(parsing: .upToNextOption, help: "Node, tensor or value names whose channels are never removed.") var ignore: [String] = []
    @Option(help: "How a channel's normalised scores over tied tensors combine: sum, mean or max.") var combine = "sum"
    @Option(help: "Seed of the random criterion.") var seed: UInt64 = 0
    @Flag(help: "Refit the layers that lose input channels by least squares on the calibration data (needs --data).") var compensate = false
    @Flag(help: "After pruning, refit every Conv (group 1) and Gemm, layer by layer, to the unpruned model's outputs on the pruned network's own inputs (needs --data).") var reconstruct = false
    @Option(name: .customLong("write-masked"), help: "Also write the same-shaped model with removed channels zeroed.") var writeMasked: String?
    @Option(help: "Write a JSON report (costs before/after, group widths) to FILE.") var report: String?

    func validate() throws {
        let targets = [ratio, flops, params].compactMap { $0 }
        guard targets.count == 1 else { throw ValidationError("give exactly one of --ratio, --flops and --params") }
        do { _ = try Criteria.parse(criterion) } catch let e as FormulaError {
            throw ValidationError("--criterion formula, \(e)")
        } catch {
            throw ValidationError("\(error)")
        }
        guard AllocationStrategy(rawValue: allocation) != nil else { throw ValidationError("--allocation must be uniform, global, global_cost, hsic or search") }
        guard ScoreCombination(rawValue: combine) != nil else { throw ValidationError("--combine must be sum, mean or max") }
        guard maxGroupRatio > 0 && maxGroupRatio <= 1 else { throw ValidationError("--max-group-ratio must be in (0, 1]") }
        guard ScoreNormalisation(rawValue: normalise) != nil else { throw ValidationError("--normalise must be max or mean") }
    }

    func run() throws {
        try runReportingErrors {
            let model = try ModelFile.load(input)
            let target: PruningTarget = ratio.map { .ratio($0) } ?? flops.map { .flops($0) } ?? .params(params ?? 1)
            let importance = try Criteria.parse(criterion, seed: seed, combination: ScoreCombination(rawValue: combine)!)
            if (allocation == "search" || allocation == "hsic") && data == nil { throw ValidationError("allocation \(allocation) needs calibration data: add --data FILE") }
            if !importance.requirements.isEmpty && data == nil { throw ValidationError("criterion \(criterion) needs calibration data: add --data FILE") }
            if compensate && data == nil { throw ValidationError("--compensate needs calibration data: add --data FILE") }
            if reconstruct && data == nil { throw ValidationError("--reconstruct needs calibration data: add --data FILE") }
            var options = PruningOptions(
                criterion: importance,
                allocation: AllocationOptions(target: target, strategy: AllocationStrategy(rawValue: allocation)!, roundTo: roundTo, minChannels: minChannels),
                ignore: Set(ignore))
            options.allocation.maxGroupRatio = maxGroupRatio
            options.allocation.normalisation = ScoreNormalisation(rawValue: normalise)!
            options.compensate = compensate
            if allocation == "search", let data {
                options.allocation.search = SearchOptions(population: population, generations: generations, seed: seed)
                options.fitness = SearchFitness.make(train: try Dataset.load(data), validation: nil, seed: seed)
                options.searchProgress = { p in
                    FileHandle.standardError.write(Data(String(format: "search generation %d/%d: best %.4f, mean %.4f (%d candidates scored)\n", p.generation, p.generations, p.best, p.mean, p.evaluated).utf8))
                }
            }
            let teacher = reconstruct ? try Pruner.copy(model) : nil
            // Read once, by whichever of calibration and reconstruction needs it first.
            var loaded: Dataset?
            func dataset() throws -> Dataset {
                if let loaded { return loaded }
                let d = try Dataset.load(data ?? "")
                loaded = d
                return d
            }
            let result: PruningResult
            do {
                let calibration = try CalibrationData.gather(for: options, model: model, data: dataset, batches: calibrationBatches, seed: seed)
                result = try Pruner.prune(model, options: options, calibration: calibration, writeMasked: writeMasked != nil)
            } catch let e as UnreachableTarget {
                throw FileError(path: input, error: e)
            }
            if let teacher {
                try Reconstruction.run(pruned: result.model, teacher: teacher, kept: result.keptChannels, data: try dataset(), masked: result.masked,
                                       batches: calibrationBatches, seed: seed) { done, all in
                    FileHandle.standardError.write(Data("reconstruction: \(done)/\(all) layers refitted\n".utf8))
                }
            }
            try ModelFile.save(result.model, to: output)
            if let path = writeMasked, let masked = result.masked { try ModelFile.save(masked, to: path) }
            let summary = PruneSummary(model: input, output: output, criterion: criterion, allocation: allocation, before: result.before, after: result.after, groups: result.widths)
            if let report { try writeTextAtomically(try summary.json(), to: report) }
            print(summary.text(), terminator: "")
        }
    }
}
