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
/// by A ⊗ G (input-patch and output-gradient second moments from calibration batches); removing
/// output filter i raises the loss by about ½ · G_ii · w_iᵀ (A + λI) w_i, with damping λ =
/// 10⁻³ · mean(diag A). The estimates are on one scale across layers, so global allocation
/// ranks them directly: NAP's automatic per-layer ratios.
public struct HessianImportance: Importance {
    public let damping: Double
    public var name: String { "hessian" }
    public var requirements: Set<ImportanceRequirement> { [.activations, .gradients] }
    public var comparableAcrossLayers: Bool { true }

    public init(damping: Double = 1e-3) { self.damping = damping }

    /// ½ · G_ii · w_iᵀ (A + λI) w_i for every row of `w` (M × K, row-major).
    public static func rowImportance(w: [Double], factors f: KFACFactors, damping: Double) -> [Double] {
        let lambda = damping * (0..<f.k).reduce(0.0) { $0 + f.a[$1 * f.k + $1] } / Double(max(f.k, 1))
        return (0..<f.m).map { i in
            let row = w[(i * f.k)..<((i + 1) * f.k)].map { $0 }
            var q = 0.0
            for r in 0..<f.k {
                var t = lambda * row[r]
                for c in 0..<f.k { t += f.a[r * f.k + c] * row[c] }
                q += row[r] * t
            }
            return 0.5 * f.g[i * f.m + i] * q
        }
    }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        guard let calibration, !calibration.kfac.isEmpty else {
            throw IRError.unsupported("the hessian criterion needs calibration data (topiary prune --data, or data.train in a pipeline)")
        }
        var acc = ClassScores(classes: analysis.classes.count, combination: .sum)
        for m in analysis.members where m.role == .producer {
            guard let f = calibration.kfac[m.tensor], let t = analysis.graph.constants[m.tensor], let v = t.floatValues(),
                  m.axis == 0, t.dims[0] == f.m, t.elementCount == f.m * f.k else { continue }
            let imp = Self.rowImportance(w: v.map { Double($0) }, factors: f, damping: damping)
            acc.addRaw(imp, classes: analysis.classIDs(m.atoms))
        }
        return acc.result
    }
}
