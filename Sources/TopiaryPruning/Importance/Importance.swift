import TopiaryIR

/// Data a criterion may ask for besides the weights.
public enum ImportanceRequirement: Sendable, Hashable {
    /// Activations of the model on calibration batches.
    case activations
    /// Gradients of the loss with respect to activations.
    case gradients
    /// Second moments and means of every Conv and Gemm layer's input patches (K-FAC's A and E[x]).
    case inputMoments
}

/// Statistics gathered by running the model on calibration batches (the engine fills them;
/// magnitude criteria ignore them).
public struct CalibrationData: Sendable {
    /// Per activation value (by name), per channel (axis 1): Σ over samples of |Σ over positions of
    /// activation × gradient of the loss|, the first-order Taylor estimate of the loss change.
    public var channelTaylor: [String: [Double]]
    /// Per weight initializer (by name), per output filter (axis 0): the L2 norm of its gradient,
    /// accumulated over the batches.
    public var filterGradientNorm: [String: [Double]]
    /// Batches used.
    public var batches: Int
    /// Per activation value (by name): normalised HSIC between the layer's features and the
    /// network's output (ITPruner's layer importance), for `allocation: hsic`.
    public var layerImportance: [String: Double]
    /// K-FAC factors by weight initializer name, for `hessian`.
    public var kfac: [String: KFACFactors]

    public init(channelTaylor: [String: [Double]] = [:], filterGradientNorm: [String: [Double]] = [:], batches: Int = 0,
                layerImportance: [String: Double] = [:], kfac: [String: KFACFactors] = [:]) {
        self.channelTaylor = channelTaylor
        self.filterGradientNorm = filterGradientNorm
        self.batches = batches
        self.layerImportance = layerImportance
        self.kfac = kfac
    }
}

/// K-FAC factors of one layer: A (K × K) and G (M × M), row-major.
public struct KFACFactors: Sendable {
    public var k: Int
    public var m: Int
    public var a: [Double]
    public var g: [Double]
    /// Mean input patch (K); empty when not measured.
    public var mean: [Double]

    public init(k: Int, m: Int, a: [Double], g: [Double], mean: [Double] = []) {
        (self.k, self.m, self.a, self.g, self.mean) = (k, m, a, g, mean)
    }
}

/// A pruning criterion: a score for every channel class, higher meaning more important.
public protocol Importance: Sendable {
    /// The name used in pipelines and on the command line (`l1`, `fpgm`, …).
    var name: String { get }
    /// What the criterion needs besides the weights.
    var requirements: Set<ImportanceRequirement> { get }
    /// One score per class of `analysis.classes`. Pinned classes may get any score.
    func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double]
    /// True when scores are on one scale across layers (an estimated loss increase), so global
    /// allocation ranks them as they are instead of normalising within each group.
    var comparableAcrossLayers: Bool { get }
}

extension Importance {
    public var requirements: Set<ImportanceRequirement> { [] }
    public var comparableAcrossLayers: Bool { false }
}

/// How the normalised scores of a class's members are combined.
public enum ScoreCombination: String, Sendable, CaseIterable {
    case sum, mean, max
}

/// The criteria Topiary knows by name.
public enum Criteria {
    /// The criterion called `name`, or nil.
    public static func named(_ name: String, seed: UInt64 = 0, combination: ScoreCombination = .sum) -> (any Importance)? {
        switch name {
        case "l1": return MagnitudeImportance(norm: 1, combination: combination)
        case "l2": return MagnitudeImportance(norm: 2, combination: combination)
        case "group_l2": return GroupMagnitudeImportance()
        case "bn_scale": return BNScaleImportance(combination: combination)
        case "fpgm": return FPGMImportance(combination: combination)
        case "random": return RandomImportance(seed: seed)
        case "taylor": return TaylorImportance(combination: combination)
        case "similarity": return SimilarityImportance(combination: combination)
        case "hessian": return HessianImportance()
        case "obs": return OBSImportance()
        default:
            if name.hasPrefix("expr:") { return try? FormulaImportance(String(name.dropFirst(5)), combination: combination) }
            return nil
        }
    }

    public static let names = ["l1", "l2", "group_l2", "bn_scale", "fpgm", "random", "taylor", "similarity", "hessian", "obs"]

    /// True for criteria that need calibration data (activations and gradients).
    public static func needsData(_ name: String) -> Bool {
        named(name).map { !$0.requirements.isEmpty } ?? false
    }
}

/// Accumulates per-member scores into per-class scores.
struct ClassScores {
    private var total: [Double]
    private var count: [Int]
    let combination: ScoreCombination

    init(classes: Int, combination: ScoreCombination) {
        total = Array(repeating: 0, count: classes)
        count = Array(repeating: 0, count: classes)
        self.combination = combination
    }

    /// Adds one member's scores (one per position), normalised by the member's largest score so
    /// that members of different scales weigh the same.
    mutating func add(_ scores: [Double], classes: [Int]) {
        let top = scores.max() ?? 0
        for (p, s) in scores.enumerated() {
            let v = top > 0 ? s / top : 0
            let c = classes[p]
            switch combination {
            case .sum, .mean: total[c] += v
            case .max: total[c] = count[c] == 0 ? v : Swift.max(total[c], v)
            }
            count[c] += 1
        }
    }

    /// Adds scores as they are (criteria whose scale means the same in every layer).
    mutating func addRaw(_ scores: [Double], classes: [Int]) {
        for (p, v) in scores.enumerated() {
            total[classes[p]] += v
            count[classes[p]] += 1
        }
    }

    func has(_ c: Int) -> Bool { count[c] > 0 }

    var result: [Double] {
        combination == .mean ? zip(total, count).map { $1 > 0 ? $0 / Double($1) : 0 } : total
    }
}

/// Slices of a tensor along one axis, as Double vectors (one per position).
func slices(of tensor: Tensor, axis: Int) -> [[Double]] {
    guard let values = tensor.floatValues() else { return [] }
    let dims = tensor.dims
    let n = dims[axis]
    let inner = dims[(axis + 1)...].reduce(1, *)
    let outer = dims[..<axis].reduce(1, *)
    var out = [[Double]](repeating: [], count: n)
    for p in 0..<n {
        out[p].reserveCapacity(outer * inner)
        for o in 0..<outer {
            let base = (o * n + p) * inner
            for i in 0..<inner { out[p].append(Double(values[base + i])) }
        }
    }
    return out
}

/// Sum of |x| (p = 1) or of x² (p = 2) of each slice of a tensor along `axis`, in one pass.
func slicePowerSums(of tensor: Tensor, axis: Int, p: Int) -> [Double] {
    let dims = tensor.dims
    let n = dims[axis]
    let inner = dims[(axis + 1)...].reduce(1, *)
    let outer = dims[..<axis].reduce(1, *)
    var out = [Double](repeating: 0, count: n)
    let sum: (UnsafePointer<Float>) -> Void = { x in
        for o in 0..<outer {
            for k in 0..<n {
                let row = x + (o * n + k) * inner
                // Eight independent partial sums so the loop vectorises.
                var lanes = SIMD8<Float>()
                var i = 0
                if p == 1 {
                    while i + 8 <= inner {
                        let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)
                        lanes += v.replacing(with: -v, where: v .< 0)
                        i += 8
                    }
                } else {
                    while i + 8 <= inner {
                        let v = UnsafeRawPointer(row + i).loadUnaligned(as: SIMD8<Float>.self)
                        lanes += v * v
                        i += 8
                    }
                }
                var acc = lanes.sum()
                while i < inner {
                    acc += p == 1 ? abs(row[i]) : row[i] * row[i]
                    i += 1
                }
                out[k] += Double(acc)
            }
        }
    }
    if tensor.dataType == .float {
        sum(UnsafePointer(tensor.buffer.base.assumingMemoryBound(to: Float.self)))
    } else if let values = tensor.floatValues() {
        values.withUnsafeBufferPointer { sum($0.baseAddress!) }
    }
    return out
}

/// L1 or L2 norm of each producing filter (`l1`, `l2`).
public struct MagnitudeImportance: Importance {
    public let norm: Int
    public let combination: ScoreCombination
    public var name: String { norm == 1 ? "l1" : "l2" }

    public init(norm: Int, combination: ScoreCombination = .sum) {
        self.norm = norm
        self.combination = combination
    }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        var acc = ClassScores(classes: analysis.classes.count, combination: combination)
        let producers = analysis.producers
        let norm = norm
        // Each filter bank is read once, the banks split across the cores (memory-bound).
        let sums = try parallelMap(producers.indices.sorted { producers[$0].tensor.elementCount > producers[$1].tensor.elementCount }) { i in
            (i, slicePowerSums(of: producers[i].tensor, axis: producers[i].member.axis, p: norm))
        }.sorted { $0.0 < $1.0 }
        for (i, s) in sums {
            acc.add(norm == 1 ? s : s.map { $0.squareRoot() }, classes: analysis.classIDs(producers[i].member.atoms))
        }
        return acc.result
    }
}

/// Squared L2 norm of every weight that removing the channel deletes (`group_l2`): its producing
/// filters, the BatchNormalization scale on it and the input slices of the layers that consume it,
/// summed as they are (no per-member normalisation) — the group magnitude of Torch-Pruning's
/// `MagnitudeImportance(p=2)`. A channel whose outgoing weights are small goes first even when its
/// filter is large.
public struct GroupMagnitudeImportance: Importance {
    public var name: String { "group_l2" }

    public init() {}

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        var acc = ClassScores(classes: analysis.classes.count, combination: .sum)
        let scored: Set<Member.Role> = [.producer, .consumer, .bnScale]
        let members = analysis.members.filter { m in
            scored.contains(m.role) && m.atoms.contains { analysis.classes[analysis.atomClass[$0]].pinned == nil }
        }
        let sums = try parallelMap(Array(members.indices)) { i -> (Int, [Double]) in
            guard let t = analysis.graph.constants[members[i].tensor], t.dims.count > members[i].axis else { return (i, []) }
            return (i, slicePowerSums(of: t, axis: members[i].axis, p: 2))
        }.sorted { $0.0 < $1.0 }
        for (i, s) in sums where s.count == members[i].atoms.count {
            acc.addRaw(s, classes: analysis.classIDs(members[i].atoms))
        }
        return acc.result
    }
}

/// |γ| of the BatchNormalization that follows each channel (`bn_scale`); channels with no
/// BatchNormalization fall back to the L2 norm of their filters.
public struct BNScaleImportance: Importance {
    public let combination: ScoreCombination
    public var name: String { "bn_scale" }

    public init(combination: ScoreCombination = .sum) { self.combination = combination }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        var acc = ClassScores(classes: analysis.classes.count, combination: combination)
        for m in analysis.members where m.role == .bnScale {
            guard let v = analysis.graph.constants[m.tensor]?.floatValues() else { continue }
            acc.add(v.map { Double(abs($0)) }, classes: analysis.classIDs(m.atoms))
        }
        var result = acc.result
        let fallback = try MagnitudeImportance(norm: 2, combination: combination).scores(analysis, calibration: calibration)
        for c in result.indices where !acc.has(c) { result[c] = fallback[c] }
        return result
    }
}

/// Filter Pruning via Geometric Median (`fpgm`): a filter close to all the others in its layer
/// (small summed Euclidean distance, i.e. near the geometric median) is redundant.
public struct FPGMImportance: Importance {
    public let combination: ScoreCombination
    public var name: String { "fpgm" }

    public init(combination: ScoreCombination = .sum) { self.combination = combination }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        var acc = ClassScores(classes: analysis.classes.count, combination: combination)
        for (m, t) in analysis.producers {
            let filters = slices(of: t, axis: m.axis)
            var s = [Double](repeating: 0, count: filters.count)
            for i in filters.indices {
                for j in (i + 1)..<filters.count where j < filters.count {
                    var d = 0.0
                    for k in filters[i].indices { let x = filters[i][k] - filters[j][k]; d += x * x }
                    d = d.squareRoot()
                    s[i] += d
                    s[j] += d
                }
            }
            acc.add(s, classes: analysis.classIDs(m.atoms))
        }
        return acc.result
    }
}

/// Uniform random scores from a seeded generator (`random`): the baseline every criterion must beat.
public struct RandomImportance: Importance {
    public let seed: UInt64
    public var name: String { "random" }

    public init(seed: UInt64) { self.seed = seed }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        var rng = SplitMix(seed: seed)
        return analysis.classes.map { _ in rng.nextUnit() }
    }
}

