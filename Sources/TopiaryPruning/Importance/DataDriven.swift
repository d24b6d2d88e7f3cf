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
        for m in analysis.members where m.role == .producer {
            guard let t = analysis.graph.constants[m.tensor] else { continue }
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
