import Testing
@testable import TopiaryPruning

/// Second moments and means of samples (N × K, row-major): A = E[x xᵀ], E[x].
private func moments(_ x: [Double], n: Int, k: Int) -> (a: [Double], mean: [Double]) {
    var a = [Double](repeating: 0, count: k * k), mean = [Double](repeating: 0, count: k)
    for s in 0..<n {
        for i in 0..<k {
            mean[i] += x[s * k + i] / Double(n)
            for j in 0..<k { a[i * k + j] += x[s * k + i] * x[s * k + j] / Double(n) }
        }
    }
    return (a, mean)
}

/// Deterministic numbers in [−1, 1).
private func noise(_ count: Int, seed: UInt64) -> [Double] {
    var state = seed
    return (0..<count).map { _ in
        state = state &* 6364136223846793005 &+ 1442695040888963407
        return Double(state >> 11) / Double(1 << 53) * 2 - 1
    }
}

@Suite struct OBSImportanceTests {
    /// The first channel the greedy removal takes costs what least-squares compensation leaves:
    /// E‖W x + b − (W′_K x_K + b + Δb)‖² computed directly from the refit `Compensation.solve`
    /// returns, the smallest over the channels (two patch columns each here).
    @Test func firstRemovalCostsWhatCompensationLeaves() throws {
        let n = 64, k = 6, m = 2, taps = 2
        let x = noise(n * k, seed: 3).enumerated().map { $0.element + ($0.offset % k == 3 ? 0.5 : 0) }  // one input with a mean
        let (a, mean) = moments(x, n: n, k: k)
        let w = noise(m * k, seed: 9).map { $0 * 2 }
        let scores = try #require(OBSImportance.channelErrors(w: w, m: m, k: k, taps: taps, a: a, mean: mean, damping: 0, withConstant: true))
        var direct: [Double] = []
        for p in 0..<(k / taps) {
            let removed = (0..<taps).map { p * taps + $0 }
            let (refit, delta) = Compensation.solve(w: w, m: m, k: k, a: a, mean: mean, removed: removed, damping: 0, withBias: true)
            var error = 0.0
            for s in 0..<n {
                for o in 0..<m {
                    var d = -delta![o]
                    for j in 0..<k { d += (removed.contains(j) ? w[o * k + j] : w[o * k + j] - refit[o * k + j]) * x[s * k + j] }
                    error += d * d / Double(n)
                }
            }
            direct.append(error)
        }
        let first = try #require(scores.indices.min { scores[$0] < scores[$1] })
        #expect(first == direct.indices.min { direct[$0] < direct[$1] })
        #expect(abs(scores[first] - direct[first]) <= 1e-9 * max(1, direct[first]))
        // Scores accumulate: every later removal costs at least as much in total.
        #expect(scores.allSatisfy { $0 >= scores[first] - 1e-12 })
    }

    /// Two inputs that carry the same signal with large weights, and a weak independent one: one
    /// duplicate goes first at almost no cost (the other takes over its weight), but then the
    /// survivor carries both and is the last to go. Scored one at a time, both duplicates would
    /// look free.
    @Test func greedyRemovalKeepsOneOfTwoDuplicates() throws {
        let n = 200, k = 3
        let base = noise(n, seed: 1), tiny = noise(n, seed: 2), other = noise(n, seed: 5)
        let x = (0..<n).flatMap { [base[$0], base[$0] + 1e-3 * tiny[$0], other[$0]] }
        let (a, mean) = moments(x, n: n, k: k)
        let scores = try #require(OBSImportance.channelErrors(w: [5, 5, 0.1], m: 1, k: k, taps: 1, a: a, mean: mean,
                                                              rowWeights: [2], damping: 1e-9, withConstant: true))
        let order = scores.indices.sorted { scores[$0] < scores[$1] }
        #expect(Set([order[0], order[2]]) == [0, 1] && order[1] == 2)
        #expect(scores[order[0]] < 1e-3 && scores[order[2]] > 10)
    }
}
