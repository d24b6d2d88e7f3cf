import Foundation
import TopiaryIR
import TopiaryPruning
import TopiaryEngine

/// `target: {flops: F}` / `{params: P}` / `{ratio: R}`.
func parseTarget(_ node: SpecNode) throws -> (PruningTarget, String) {
    let t = try node.mapping(allowed: ["flops", "params", "ratio"])
    guard t.count == 1, let (k, v) = t.first else { throw node.error("target takes exactly one of flops, params, ratio") }
    let x = try v.double()
    switch k {
    case "ratio":
        guard x >= 0 && x < 1 else { throw v.error("ratio \(x) is impossible: the fraction of channels removed must be in [0, 1)") }
        return (.ratio(x), "ratio \(x)")
    case "flops":
        guard x > 0 && x <= 1 else { throw v.error("flops \(x) is impossible: the fraction of FLOPs kept must be in (0, 1]") }
        return (.flops(x), "flops \(x)")
    default:
        guard x > 0 && x <= 1 else { throw v.error("params \(x) is impossible: the fraction of parameters kept must be in (0, 1]") }
        return (.params(x), "params \(x)")
    }
}

/// `prune: {criterion, target, allocation, round_to, min_channels, ignore, combine}`.
public struct PruneStage: PipelineStage {
    public static let key = "prune"
    public static let keys = ["criterion", "target", "allocation", "round_to", "min_channels", "max_group_ratio", "normalise", "ignore", "combine", "seed", "calibration_batches", "search", "compensate", "reconstruct"]
    var criterion: String
    var target: PruningTarget
    var targetText: String
    let allocation: AllocationStrategy
    let roundTo: Int
    let minChannels: Int
    let maxGroupRatio: Double
    let normalisation: ScoreNormalisation
    let ignore: [String]
    let combine: ScoreCombination
    let seed: UInt64?
    let calibrationBatches: Int
    let search: SearchOptions
    let compensate: Bool
    let reconstruct: Bool
    /// Where the target is, for errors found once the model is analysed.
    let targetNode: SpecNode?

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        try self.init(fields: fields, node: node, context: &context, given: nil)
    }

    /// With `given`, the target comes from elsewhere (a sweep) instead of `fields`.
    init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext, given: (PruningTarget, String, SpecNode)?) throws {
        criterion = try fields.string("criterion") ?? "l2"
        do {
            let c = try Criteria.parse(criterion)
            if !c.requirements.isEmpty && !context.spec.train {
                throw fields["criterion"]!.error("criterion \(criterion) needs calibration data: add data.train to the pipeline")
            }
        } catch let e as FormulaError {
            // Point at the offending character inside the formula.
            let n = fields["criterion"]!
            var offset = (criterion.distance(from: criterion.startIndex, to: criterion.firstIndex(of: ":")!) + 1)
                + criterion.dropFirst(5).prefix(while: { $0 == " " }).count
            // A quoted scalar's mark is at its opening quote.
            if let style = n.node.scalar?.style, style == .doubleQuoted || style == .singleQuoted { offset += 1 }
            throw SpecError(file: n.file, line: n.line, column: n.column + offset + e.column - 1, message: "\(n.path): \(e.message)")
        } catch let e as IRError {
            throw fields["criterion"]!.error("\(e)")
        }
        calibrationBatches = try fields.int("calibration_batches") ?? 4
        if let given {
            (target, targetText, targetNode) = (given.0, given.1, given.2)
        } else {
            guard let t = fields["target"] else { throw node.error("prune needs a target: {flops: F}, {params: P} or {ratio: R}") }
            (target, targetText) = try parseTarget(t)
            targetNode = t
        }
        let a = try fields.string("allocation") ?? "global"
        guard let strategy = AllocationStrategy(rawValue: a) else { throw fields["allocation"]!.error("allocation must be uniform, global, global_cost, hsic or search") }
        allocation = strategy
        if (strategy == .hsic || strategy == .search) && !context.spec.train {
            throw fields["allocation"]!.error("allocation \(a) needs calibration data: add data.train to the pipeline")
        }
        var so = SearchOptions()
        if let sn = fields["search"] {
            let sf = try sn.mapping(allowed: ["population", "generations", "mutation_rate"])
            so.population = try sf.int("population") ?? so.population
            so.generations = try sf.int("generations") ?? so.generations
            so.mutationRate = try sf.double("mutation_rate") ?? so.mutationRate
            guard so.population >= 2 else { throw sf["population"]!.error("population must be ≥ 2") }
            guard so.generations >= 1 else { throw sf["generations"]!.error("generations must be ≥ 1") }
            guard strategy == .search else { throw sn.error("search settings need allocation: search") }
        }
        search = so
        roundTo = try fields.int("round_to") ?? 1
        minChannels = try fields.int("min_channels") ?? 1
        guard roundTo >= 1 else { throw fields["round_to"]!.error("round_to must be ≥ 1") }
        guard minChannels >= 1 else { throw fields["min_channels"]!.error("min_channels must be ≥ 1") }
        maxGroupRatio = try fields.double("max_group_ratio") ?? 1
        guard maxGroupRatio > 0 && maxGroupRatio <= 1 else { throw fields["max_group_ratio"]!.error("max_group_ratio must be in (0, 1]") }
        let nm = try fields.string("normalise") ?? "max"
        guard let norm = ScoreNormalisation(rawValue: nm) else { throw fields["normalise"]!.error("normalise must be max or mean") }
        normalisation = norm
        ignore = try fields["ignore"]?.strings() ?? []
        let c = try fields.string("combine") ?? "sum"
        guard let comb = ScoreCombination(rawValue: c) else { throw fields["combine"]!.error("combine must be sum, mean or max") }
        combine = comb
        seed = try fields.int("seed").map { UInt64($0) }
        compensate = try fields.bool("compensate") ?? false
        if compensate && !context.spec.train {
            throw fields["compensate"]!.error("compensate needs calibration data: add data.train to the pipeline")
        }
        reconstruct = try fields.bool("reconstruct") ?? false
        if reconstruct && !context.spec.train {
            throw fields["reconstruct"]!.error("reconstruct needs calibration data: add data.train to the pipeline")
        }
        context.pruned = true
    }

    public var resolved: [String: Any] {
        var out: [String: Any] = ["criterion": criterion, "allocation": allocation.rawValue, "round_to": roundTo, "min_channels": minChannels, "max_group_ratio": maxGroupRatio, "normalise": normalisation.rawValue, "ignore": ignore, "combine": combine.rawValue, "compensate": compensate, "reconstruct": reconstruct]
        if allocation == .search { out["search"] = ["population": search.population, "generations": search.generations, "mutation_rate": search.mutationRate] }
        switch target {
        case .ratio(let r): out["target"] = ["ratio": r]
        case .flops(let f): out["target"] = ["flops": f]
        case .params(let p): out["target"] = ["params": p]
        }
        return out
    }

    public var label: String { "prune \(criterion) to \(targetText)" }

    func options(seed runSeed: UInt64) -> PruningOptions {
        var a = AllocationOptions(target: target, strategy: allocation, roundTo: roundTo, minChannels: minChannels)
        a.maxGroupRatio = maxGroupRatio
        a.normalisation = normalisation
        var o = PruningOptions(criterion: (try? Criteria.parse(criterion, seed: seed ?? runSeed, combination: combine)) ?? MagnitudeImportance(norm: 2),
                               allocation: a, ignore: Set(ignore))
        o.compensate = compensate
        return o
    }

    public func run(_ run: RunContext, index: Int) throws {
        run.teacher = try Pruner.copy(run.model)
        let result: PruningResult
        do {
            result = try Pruner.prune(run.model, options: try runOptions(run), calibration: try calibration(run))
        } catch let e as UnreachableTarget {
            if let n = targetNode { throw n.error(e.description) }
            throw e
        }
        if reconstruct, let teacher = run.teacher {
            nonisolated(unsafe) let log = run.log
            try Reconstruction.run(pruned: run.model, teacher: teacher, kept: result.keptChannels, data: try run.dataset("train"), batches: calibrationBatches,
                                   threads: run.spec.threads, seed: run.spec.seed) { done, all in log("  reconstruction: \(done)/\(all) layers refitted") }
        }
        run.pruned(keeping: result.keptChannels, freshTeacher: true)
        run.record.pruning.append(.init(stage: index, criterion: criterion, target: targetText, before: result.before, after: result.after, groups: result.widths))
        run.log(String(format: "pruned: params %@ -> %@, FLOPs %@ -> %@ (%.3f kept)", ReportRenderer.count(result.before.params), ReportRenderer.count(result.after.params),
                       ReportRenderer.count(result.before.flops), ReportRenderer.count(result.after.flops), Double(result.after.flops) / Double(max(result.before.flops, 1))))
    }

    /// Calibration statistics on the training data, when the criterion needs them.
    func calibration(_ run: RunContext) throws -> CalibrationData? {
        try CalibrationData.gather(for: options(seed: run.spec.seed), model: run.model, data: { try run.dataset("train") },
                                   batches: calibrationBatches, threads: run.spec.threads, seed: run.spec.seed)
    }

    /// Options with the search's fitness and progress attached, when the allocation is `search`.
    func runOptions(_ run: RunContext) throws -> PruningOptions {
        var o = options(seed: run.spec.seed)
        guard allocation == .search else { return o }
        var so = search
        so.seed = seed ?? run.spec.seed
        o.allocation.search = so
        o.fitness = SearchFitness.make(train: try run.dataset("train"), validation: nil, threads: run.spec.threads, seed: so.seed)
        nonisolated(unsafe) let log = run.log
        o.searchProgress = { p in log(String(format: "  search generation %d/%d: best %.4f, mean %.4f (%d candidates)", p.generation, p.generations, p.best, p.mean, p.evaluated)) }
        return o
    }

    /// Checks before the run that the target can be met on `model` (the model as loaded).
    func checkReachable(on model: Model, seed: UInt64) throws {
        guard case .ratio = target else {
            let probe = try Pruner.copy(model)
            // Reachability depends on the graph, not the scores: a data-free criterion stands in.
            var o = options(seed: seed)
            if !o.criterion.requirements.isEmpty { o.criterion = MagnitudeImportance(norm: 2) }
            if o.allocation.strategy == .hsic || o.allocation.strategy == .search { o.allocation.strategy = .global }
            o.compensate = false
            do { _ = try Pruner.prune(probe, options: o) } catch let e as UnreachableTarget {
                throw (targetNode ?? SpecNode(.init(""), file: "")).error(e.description)
            }
            return
        }
    }
}
