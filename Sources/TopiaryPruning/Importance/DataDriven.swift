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
    public var requirements: Set<ImportanceRequirement> { [.activations, .gradients, .inputMoments] }
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

/// Layer-wise Optimal Brain Surgeon for channels (`obs`), the structured score of Optimal Brain
/// Compression: what removing a channel costs a layer that reads it once the layer's other weights
/// and its constant are refitted by least squares (what `compensate` and `reconstruct` then do).
/// With H = E[x̃ x̃ᵀ] + λI over the layer's input patches and a constant (x̃ = (x, 1); K-FAC's A
/// and E[x]) and R the patch columns of the channel, the smallest mean squared change of the
/// layer's output row o is w_{o,R} ((H⁻¹)_RR)⁻¹ w_{o,R}ᵀ. Each row is weighted by γ_o² / (σ_o² + ε)
/// of the BatchNormalization after the layer (the error as the next layer sees it) and the rows and
/// the channel's readers are summed. A channel that others can stand in for scores near zero however
/// large its weights. Channels no measured layer reads fall back to `group_l2`.
public struct OBSImportance: Importance {
    public let damping: Double
    public var name: String { "obs" }
    public var requirements: Set<ImportanceRequirement> { [.activations, .gradients, .inputMoments] }

    public init(damping: Double = 1e-2) { self.damping = damping }

    /// For every channel position p of an M × K weight `w` (row-major; the channel's columns are
    /// p·taps ..< (p+1)·taps): Σ_o s_o · w_{o,R} ((H⁻¹)_RR)⁻¹ w_{o,R}ᵀ, H = E[x̃ x̃ᵀ] + λI with the
    /// constant only when `withConstant`, λ = `damping` · mean(diag A), s = `rowWeights` (all 1 when
    /// empty). nil when H cannot be factored.
    public static func channelErrors(w: [Double], m: Int, k: Int, taps: Int, a: [Double], mean: [Double], rowWeights: [Double] = [],
                                     damping: Double, withConstant: Bool) -> [Double]? {
        let n = withConstant ? k + 1 : k
        let lambda = damping * (0..<k).reduce(0.0) { $0 + a[$1 * k + $1] } / Double(max(k, 1))
        var h = [Double](repeating: 0, count: n * n)
        for i in 0..<k { for j in 0..<k { h[i * n + j] = a[i * k + j] } }
        if withConstant {
            for i in 0..<k { h[i * n + k] = mean[i]; h[k * n + i] = mean[i] }
            h[n * n - 1] = 1
        }
        for i in 0..<n { h[i * n + i] += lambda }
        guard taps > 0, k % taps == 0, Compensation.cholesky(&h, n) else { return nil }
        // H⁻¹, a column at a time; then remove channels greedily (Optimal Brain Compression): the one
        // whose removal, with the others refitted, adds the least error goes; the weights and H⁻¹
        // are updated as if it were gone, and its score is the error accumulated so far.
        var inv = [Double](repeating: 0, count: n * n)
        var column = [Double](repeating: 0, count: n)
        for j in 0..<n {
            for i in 0..<n { column[i] = i == j ? 1 : 0 }
            column.withUnsafeMutableBufferPointer { Compensation.solveFactored(h, n, $0.baseAddress!) }
            for i in 0..<n { inv[i * n + j] = column[i] }
        }
        var wk = w
        let channels = k / taps
        var alive = [Bool](repeating: true, count: channels)
        var scores = [Double](repeating: 0, count: channels)
        var total = 0.0
        for _ in 0..<channels {
            var best: (p: Int, error: Double, factor: [Double])? = nil
            for p in 0..<channels where alive[p] {
                var block = [Double](repeating: 0, count: taps * taps)
                for i in 0..<taps { for j in 0..<taps { block[i * taps + j] = inv[(p * taps + i) * n + p * taps + j] } }
                guard Compensation.cholesky(&block, taps) else { continue }
                var error = 0.0, v = [Double](repeating: 0, count: taps)
                for o in 0..<m {
                    for i in 0..<taps { v[i] = wk[o * k + p * taps + i] }
                    var y = v
                    y.withUnsafeMutableBufferPointer { Compensation.solveFactored(block, taps, $0.baseAddress!) }
                    error += (rowWeights.isEmpty ? 1 : rowWeights[o]) * zip(v, y).reduce(0) { $0 + $1.0 * $1.1 }
                }
                if best == nil || error < best!.error { best = (p, error, block) }
            }
            guard let (p, error, block) = best else { break }
            total += max(error, 0)
            scores[p] = total
            alive[p] = false
            let r = (0..<taps).map { p * taps + $0 }
            // W ← W − W_R (H⁻¹_RR)⁻¹ H⁻¹_{R,:}  and  H⁻¹ ← H⁻¹ − H⁻¹_{:,R} (H⁻¹_RR)⁻¹ H⁻¹_{R,:}.
            var solvedRows = [Double](repeating: 0, count: taps * n)  // (H⁻¹_RR)⁻¹ H⁻¹_{R,:}, column by column
            for c in 0..<n {
                var y = r.map { inv[$0 * n + c] }
                y.withUnsafeMutableBufferPointer { Compensation.solveFactored(block, taps, $0.baseAddress!) }
                for i in 0..<taps { solvedRows[i * n + c] = y[i] }
            }
            for o in 0..<m {
                let wr = r.map { wk[o * k + $0] }
                for c in 0..<k { var d = 0.0; for i in 0..<taps { d += wr[i] * solvedRows[i * n + c] }; wk[o * k + c] -= d }
            }
            let invR = (0..<n).map { row in r.map { inv[row * n + $0] } }
            for a in 0..<n {
                for b in 0..<n { var d = 0.0; for i in 0..<taps { d += invR[a][i] * solvedRows[i * n + b] }; inv[a * n + b] -= d }
            }
        }
        return scores
    }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        guard let calibration, !calibration.kfac.isEmpty else {
            throw IRError.unsupported("the obs criterion needs calibration data (topiary prune --data, or data.train in a pipeline)")
        }
        let consumers = Compensation.measuredConsumers(analysis, factors: calibration.kfac)
        let errors = try parallelMap(consumers) { c -> [Double]? in
            let f = c.factors
            return Self.channelErrors(w: c.layer.matrix, m: f.m, k: f.k, taps: c.taps, a: f.a, mean: f.mean,
                                      rowWeights: Self.rowWeights(c.normalisation, rows: f.m, graph: analysis.graph),
                                      damping: damping, withConstant: c.layer.hasConstant)
        }
        var acc = ClassScores(classes: analysis.classes.count, combination: .sum)
        var measured = Set<Int>()
        for (c, e) in zip(consumers, errors) {
            guard let e, e.count == c.member.atoms.count else { continue }
            let ids = analysis.classIDs(c.member.atoms)
            acc.addRaw(e, classes: ids)
            measured.formUnion(ids)
        }
        let obs = acc.result
        guard measured.count < obs.count else { return obs }
        let fallback = try GroupMagnitudeImportance().scores(analysis, calibration: nil)
        return obs.indices.map { measured.contains($0) ? obs[$0] : fallback[$0] }
    }

    /// γ_o² / (σ_o² + ε) of the BatchNormalization after a layer; empty (all 1) without one.
    static func rowWeights(_ bn: Node?, rows: Int, graph: DependencyGraph) -> [Double] {
        guard let bn, let gamma = bn.input(1).flatMap({ graph.constants[$0]?.floatValues() }),
              let variance = bn.input(4).flatMap({ graph.constants[$0]?.floatValues() }), gamma.count == rows, variance.count == rows else { return [] }
        let eps = Double(bn.float("epsilon", default: 1e-5))
        return (0..<rows).map { Double(gamma[$0]) * Double(gamma[$0]) / (Double(variance[$0]) + eps) }
    }
}
