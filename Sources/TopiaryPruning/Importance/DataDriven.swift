import TopiaryIR

/// First-order Taylor importance (`taylor`): the loss change from removing a channel, estimated
/// as |Σ activation × gradient| over calibration samples, summed over the channel's producers.
public struct TaylorImportance: Importance {
    public let combination: ScoreCombination
    public var name: String { "taylor" }
    public var requirements: Set<ImportanceRequirement> { [.activations, .gradients] }

    public init(combination: ScoreCombination = .sum) { self.combination = combination }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        guard let calibration, !calibration.channelTaylor.isEmpty else {
            throw IRError.unsupported("the taylor criterion needs calibration data (topiary prune --data, or data.train in a pipeline)")
        }
        var acc = ClassScores(classes: analysis.classes.count, combination: combination)
        for space in analysis.graph.spaces where space.size > 0 {
            guard let t = calibration.channelTaylor[space.name], t.count == space.size else { continue }
            acc.add(t, classes: (0..<space.size).map { analysis.atomClass[space.firstAtom + $0] })
        }
        return acc.result
    }
}

/// Functional redundancy (`similarity`): a filter whose weights point the same way as another
/// filter of its layer (cosine similarity near 1) adds little; its score is 1 − its highest
/// similarity to any other filter, so duplicates go first.
public struct SimilarityImportance: Importance {
    public let combination: ScoreCombination
    public var name: String { "similarity" }

    public init(combination: ScoreCombination = .sum) { self.combination = combination }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        var acc = ClassScores(classes: analysis.classes.count, combination: combination)
        for (m, t) in analysis.producers {
            let f = slices(of: t, axis: m.axis)
            let norms = f.map { $0.reduce(0) { $0 + $1 * $1 }.squareRoot() }
            var s = [Double](repeating: 1, count: f.count)
            for i in f.indices {
                var best = 0.0
                for j in f.indices where j != i {
                    let denom = norms[i] * norms[j]
                    guard denom > 0 else { continue }
                    var dot = 0.0
                    for k in f[i].indices { dot += f[i][k] * f[j][k] }
                    best = max(best, dot / denom)
                }
                // A zero filter is as redundant as can be.
                s[i] = norms[i] > 0 ? 1 - best : 0
            }
            acc.add(s, classes: analysis.classIDs(m.atoms))
        }
        return acc.result
    }
}

/// Second-order importance with K-FAC (as in NAP): the Hessian block of a layer is approximated
/// by A ⊗ G (input-patch and output-gradient second moments from calibration batches). Removing
/// output channel i moves its pre-activation z_i = w_i·x + b_i to the value c_i at which the
/// channel's output is zero, which raises the loss by about ½ · G_ii · E[(z_i − c_i)²] =
/// ½ · G_ii · (w_iᵀ (A + λI) w_i + 2 d_i w_i·E[x] + d_i²), d_i = b_i − c_i, with damping λ =
/// 10⁻³ · mean(diag A). Without a BatchNormalization after the layer c_i = 0 (the output is z);
/// with one, c_i = μ_i − σ_i β_i / γ_i (its output γ_i (z_i − μ_i) / σ_i + β_i is then zero), so
/// the shift β that the channel also carries counts. The estimates are on one scale across
/// layers, so global allocation ranks them directly: NAP's automatic per-layer ratios.
public struct HessianImportance: Importance {
    public let damping: Double
    public var name: String { "hessian" }
    public var requirements: Set<ImportanceRequirement> { [.activations, .gradients] }
    public var comparableAcrossLayers: Bool { true }

    public init(damping: Double = 1e-3) { self.damping = damping }

    /// ½ · G_ii · (w_iᵀ (A + λI) w_i + 2 d_i w_i·mean + d_i²) for every row of `w` (M × K,
    /// row-major); the d terms only when `offsets` (M) and the factors' mean are given.
    public static func rowImportance(w: [Double], factors f: KFACFactors, damping: Double, offsets: [Double]? = nil) -> [Double] {
        let lambda = damping * (0..<f.k).reduce(0.0) { $0 + f.a[$1 * f.k + $1] } / Double(max(f.k, 1))
        let shifted = offsets != nil && f.mean.count == f.k
        return (0..<f.m).map { i in
            let row = w[(i * f.k)..<((i + 1) * f.k)].map { $0 }
            var q = 0.0
            for r in 0..<f.k {
                var t = lambda * row[r]
                for c in 0..<f.k { t += f.a[r * f.k + c] * row[c] }
                q += row[r] * t
            }
            if shifted, let d = offsets?[i] {
                var wm = 0.0
                for r in 0..<f.k { wm += row[r] * f.mean[r] }
                q += 2 * d * wm + d * d
            }
            return 0.5 * f.g[i * f.m + i] * q
        }
    }

    /// d_i = b_i − c_i of a producing node's output channels (see the type's comment).
    static func offsets(of node: Node, channels: Int, graph: DependencyGraph, normalisation: [String: Node]) -> [Double] {
        func floats(_ name: String?) -> [Double]? {
            guard let name, let v = graph.constants[name]?.floatValues(), v.count == channels else { return nil }
            return v.map { Double($0) }
        }
        let bias = floats(node.input(2)) ?? Array(repeating: 0, count: channels)
        guard let out = node.outputs.first, let bn = normalisation[out],
              let gamma = floats(bn.input(1)), let beta = floats(bn.input(2)), let mu = floats(bn.input(3)), let variance = floats(bn.input(4)) else {
            return bias
        }
        let eps = Double(bn.float("epsilon", default: 1e-5))
        return (0..<channels).map { i in
            let g = gamma[i] >= 0 ? max(gamma[i], 1e-6) : min(gamma[i], -1e-6)
            let c = mu[i] - (variance[i] + eps).squareRoot() * beta[i] / g
            return bias[i] - c
        }
    }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        guard let calibration, !calibration.kfac.isEmpty else {
            throw IRError.unsupported("the hessian criterion needs calibration data (topiary prune --data, or data.train in a pipeline)")
        }
        let (nodes, normalisation) = LayerLookup.tables(analysis.model.graph)
        var acc = ClassScores(classes: analysis.classes.count, combination: .sum)
        for m in analysis.members where m.role == .producer {
            guard let f = calibration.kfac[m.tensor], let t = analysis.graph.constants[m.tensor], let v = t.floatValues(),
                  m.axis == 0, t.dims[0] == f.m, t.elementCount == f.m * f.k else { continue }
            let offsets = nodes[m.node].map { Self.offsets(of: $0, channels: f.m, graph: analysis.graph, normalisation: normalisation) }
            let imp = Self.rowImportance(w: v.map { Double($0) }, factors: f, damping: damping, offsets: offsets)
            acc.addRaw(imp, classes: analysis.classIDs(m.atoms))
        }
        return acc.result
    }
}

/// The model's nodes by label, and its BatchNormalization nodes by the value they normalise: what
/// the users of K-FAC statistics (hessian scores, compensation) look up for each layer.
enum LayerLookup {
    static func tables(_ graph: Graph) -> (nodes: [String: Node], normalisation: [String: Node]) {
        var normalisation: [String: Node] = [:]
        for n in graph.nodes where n.opType == "BatchNormalization" { if let x = n.input(0) { normalisation[x] = n } }
        return (Dictionary(graph.nodes.map { ($0.label, $0) }, uniquingKeysWith: { a, _ in a }), normalisation)
    }
}
