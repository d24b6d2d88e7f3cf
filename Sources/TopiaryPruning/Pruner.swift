import Dispatch
import TopiaryIR

/// Options of one pruning run.
public struct PruningOptions: Sendable {
    public var criterion: any Importance
    public var allocation: AllocationOptions
    /// Node, tensor or value names whose channels are never removed.
    public var ignore: Set<String>

    /// For `allocation: search`: scores a model whose removed channels are zeroed (higher is
    /// better), and receives progress after each generation.
    public var fitness: (@Sendable (Model) throws -> Double)?
    public var searchProgress: (@Sendable (SearchProgress) -> Void)?
    /// Output channels (by producing weight's name) that an earlier round already masked: they are
    /// removed again, first, whatever their scores (gradual pruning).
    public var pinned: [String: [Int]] = [:]
    /// Refit the layers that lose input channels by least squares on the calibration statistics
    /// (`Compensation`); needs K-FAC factors in the calibration data.
    public var compensate = false
    /// Ridge term of that fit, relative to the mean input second moment.
    public var compensationDamping = 1e-2

    public init(criterion: any Importance, allocation: AllocationOptions, ignore: Set<String> = []) {
        self.criterion = criterion
        self.allocation = allocation
        self.ignore = ignore
    }
}

/// Width of one dependency group before and after pruning.
public struct GroupWidth: Codable, Sendable {
    public var group: Int
    public var producers: [String]
    public var before: Int
    public var after: Int
}

/// What a pruning run produced.
public struct PruningResult {
    /// The pruned model (the input model, edited in place).
    public var model: Model
    /// The same-shaped model with the removed channels zeroed, when asked for.
    public var masked: Model?
    public var before: CostTotals
    public var after: CostTotals
    public var widths: [GroupWidth]
    /// Activations (by value name) whose channel axis 1 lost channels: the kept positions in the
    /// unpruned model, in order (feature distillation matches them to the teacher's).
    public var keptChannels: [String: [Int]] = [:]
    /// Seconds spent in each phase, in order.
    public var timings: [(phase: String, seconds: Double)]
}

/// Values whose release can wait: handed to another thread, which lets go of them.
final class Garbage: @unchecked Sendable {
    private var value: Any?
    init(_ value: Any) { self.value = value }
    func drop() { value = nil }
}

/// Times the phases of a run.
struct PhaseClock {
    private(set) var timings: [(phase: String, seconds: Double)] = []
    private var last = DispatchTime.now().uptimeNanoseconds

    mutating func lap(_ phase: String) {
        let now = DispatchTime.now().uptimeNanoseconds
        timings.append((phase, Double(now - last) / 1e9))
        last = now
    }
}

/// Structural channel pruning: analysis, importance, allocation, surgery.
public enum Pruner {
    /// Normalises a model for pruning without changing what it computes: shape arithmetic becomes
    /// constants, and `Identity` copies of weights become weights of their own.
    public static func prepare(_ model: Model) throws {
        try FreezeShapeInputs.run(model)
        UntieWeightCopies.run(model)
        model.graph.removeDeadCode()
    }

    /// Prunes `model` in place (after `prepare`).
    /// With `exactly`, the channels removed are those output channels (by producing weight) and
    /// no others; scores and allocation are skipped.
    public static func prune(_ model: Model, options: PruningOptions, calibration: CalibrationData? = nil, writeMasked: Bool = false,
                             exactly: [String: [Int]]? = nil) throws -> PruningResult {
        var clock = PhaseClock()
        try prepare(model)
        let shapes = try ShapeInference.run(model)
        clock.lap("prepare")
        let beforeCost = try CostModel.analyse(model.graph, shapes: shapes)
        clock.lap("cost before")
        let masked: Model? = writeMasked ? try copy(model) : nil
        let analysis = try DependencyAnalysis(model: model, ignore: options.ignore, shapes: shapes)
        clock.lap("dependency analysis")
        var fitness: ((Set<Int>) throws -> Double)?
        if options.allocation.strategy == .search, let score = options.fitness, exactly == nil {
            // Each candidate: a copy of the model with its removed channels zeroed (and the layers
            // that lose them refitted, with compensation: candidates are judged as they would start).
            let base = try ModelFile.encode(model)
            let factors = options.compensate ? calibration?.kfac : nil
            let damping = options.compensationDamping
            fitness = { removed in
                let candidate = try base.withUnsafeBytes { try ModelFile.decode($0) }
                let a = try DependencyAnalysis(model: candidate, ignore: options.ignore)
                if let factors { try Compensation.apply(a, removing: removed, factors: factors, damping: damping) }
                try Masking.apply(a, removing: removed)
                return try score(candidate)
            }
        }
        let allocation = try exactly.map { Allocation(removed: classes(of: $0, in: analysis)) }
            ?? allocate(analysis, options: options, calibration: calibration, cost: beforeCost, fitness: fitness, clock: &clock)
        clock.lap("allocation")
        let refit: (DependencyAnalysis) throws -> Void = { a in
            guard options.compensate else { return }
            guard let factors = calibration?.kfac, !factors.isEmpty else {
                throw IRError.unsupported("compensation needs calibration data (topiary prune --data, or data.train in a pipeline)")
            }
            try Compensation.apply(a, removing: allocation.removed, factors: factors, damping: options.compensationDamping)
        }
        try refit(analysis)
        if options.compensate { clock.lap("compensation") }
        let widths = analysis.groups.filter { $0.width > 0 }.map { g in
            GroupWidth(group: g.id, producers: g.producers, before: g.width, after: g.classes.filter { !allocation.removed.contains($0) }.count)
        }
        if let masked {
            let maskedAnalysis = try DependencyAnalysis(model: masked, ignore: options.ignore)
            try refit(maskedAnalysis)
            try Masking.apply(maskedAnalysis, removing: allocation.removed)
            clock.lap("masking")
        }
        let kept = analysis.keptChannels(removing: allocation.removed)
        let surgery: Surgery.Outcome
        do {
            surgery = try Surgery.apply(analysis, removing: allocation.removed)
        } catch let b as Barrier {
            throw IRError.invalid("surgery failed: \(b.reason)")
        }
        clock.lap("surgery")
        // Counted while large weights are still moving (costs read shapes, never weights).
        let afterCost: CostReport
        do {
            afterCost = try CostModel.analyse(model.graph, shapes: surgery.shapes)
        } catch {
            surgery.finish()
            throw error
        }
        clock.lap("cost after")
        surgery.finish()
        clock.lap("weights moved")
        // The analysis, shape tables and cost reports are many small objects: freed on a
        // background queue rather than before this call returns.
        let garbage = Garbage((analysis, shapes, beforeCost, afterCost, surgery))
        DispatchQueue.global(qos: .utility).async { garbage.drop() }
        return PruningResult(model: model, masked: masked, before: beforeCost.totals, after: afterCost.totals, widths: widths, keptChannels: kept, timings: clock.timings)
    }

    /// Soft pruning: zeroes, in place and without changing any shape, the channels a pruning run
    /// with `options` would remove (producer filters, biases, BatchNormalization scale and shift).
    /// Returns the zeroed output filters of every producing weight, by initializer name. The model
    /// should have been through `prepare`.
    public static func mask(_ model: Model, options: PruningOptions, calibration: CalibrationData? = nil) throws -> MaskedChannels {
        let shapes = try ShapeInference.run(model)
        let cost = try CostModel.analyse(model.graph, shapes: shapes)
        let analysis = try DependencyAnalysis(model: model, ignore: options.ignore, shapes: shapes)
        var clock = PhaseClock()
        let allocation = try allocate(analysis, options: options, calibration: calibration, cost: cost, fitness: nil, clock: &clock)
        let cuts = try Masking.apply(analysis, removing: allocation.removed)
        var filters: [String: [Int]] = [:]
        for m in analysis.members where m.role == .producer {
            let positions = m.atoms.indices.filter { allocation.removed.contains(analysis.atomClass[m.atoms[$0]]) }
            if !positions.isEmpty { filters[m.tensor, default: []].append(contentsOf: positions) }
        }
        let dims = Dictionary(model.graph.initializers.map { ($0.name, $0.dims) }, uniquingKeysWith: { a, _ in a })
        let zeroed = cuts.sorted { $0.key < $1.key }.flatMap { name, list in
            list.map { ZeroSlices(tensor: name, dims: dims[name] ?? [], axis: $0.axis, positions: $0.positions) }
        }
        let estimator = CostEstimator(analysis: analysis, cost: cost)
        let kept = estimator.estimate(removing: allocation.removed)
        return MaskedChannels(filters: filters, zeroed: zeroed, flopsKept: kept.flops / max(estimator.base.flops, 1),
                              paramsKept: kept.params / max(estimator.base.params, 1))
    }

    /// Scores every class and chooses those to remove (one path for pruning and masking).
    static func allocate(_ analysis: DependencyAnalysis, options: PruningOptions, calibration: CalibrationData?, cost: CostReport,
                         fitness: ((Set<Int>) throws -> Double)?, clock: inout PhaseClock) throws -> Allocation {
        let scores = try options.criterion.scores(analysis, calibration: calibration)
        clock.lap("importance (\(options.criterion.name))")
        var allocationOptions = options.allocation
        allocationOptions.normaliseScores = !options.criterion.comparableAcrossLayers
        if allocationOptions.strategy == .hsic {
            guard let layers = calibration?.layerImportance, !layers.isEmpty else {
                throw IRError.unsupported("allocation hsic needs calibration data (topiary prune --data, or data.train in a pipeline)")
            }
            allocationOptions.groupImportance = analysis.groupImportance(layers)
        }
        let pinned = classes(of: options.pinned, in: analysis)
        allocationOptions.pinned = pinned
        var allocation = try Allocation.allocate(analysis, scores: scores, options: allocationOptions, makeEstimator: {
            CostEstimator(analysis: analysis, cost: cost)
        }, fitness: fitness, progress: options.searchProgress)
        allocation.removed.formUnion(pinned)
        return allocation
    }

    /// The classes that hold the given output channels of producing weights.
    static func classes(of channels: [String: [Int]], in analysis: DependencyAnalysis) -> Set<Int> {
        guard !channels.isEmpty else { return [] }
        var out = Set<Int>()
        for m in analysis.members where m.role == .producer {
            guard let positions = channels[m.tensor] else { continue }
            for p in positions where p < m.atoms.count { out.insert(analysis.atomClass[m.atoms[p]]) }
        }
        return out
    }

    /// A deep copy of a model (through its serialized form).
    public static func copy(_ model: Model) throws -> Model {
        let bytes = try ModelFile.encode(model)
        return try bytes.withUnsafeBytes { try ModelFile.decode($0) }
    }
}

/// What `Pruner.mask` zeroed: the output channels of each producing weight, every zeroed slice
/// (filters, biases, normalisation scales and shifts) for holding them at zero while training,
/// and the fractions of FLOPs and parameters left once they are removed (estimated).
public struct MaskedChannels {
    public var filters: [String: [Int]]
    public var zeroed: [ZeroSlices]
    public var flopsKept: Double
    public var paramsKept: Double
}
