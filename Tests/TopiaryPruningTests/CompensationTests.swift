import Testing
import TopiaryIR
import TopiaryTestSupport
@testable import TopiaryPruning

/// The least-squares refit of a layer that loses inputs, checked against what least squares means:
/// an exact fit when the removed input is an affine mix of the kept ones, and otherwise a residual
/// orthogonal to every kept input and to the constant, smaller than dropping the columns.
@Suite struct CompensationTests {
    /// Second moment A (k × k) and mean (k) of `samples`.
    func moments(_ samples: [[Double]]) -> (a: [Double], mean: [Double]) {
        let k = samples[0].count, n = Double(samples.count)
        var a = [Double](repeating: 0, count: k * k), mean = [Double](repeating: 0, count: k)
        for x in samples { for p in 0..<k { mean[p] += x[p] / n; for q in 0..<k { a[p * k + q] += x[p] * x[q] / n } } }
        return (a, mean)
    }

    func samples(_ n: Int, _ k: Int, seed: UInt64) -> [[Double]] {
        var r = SplitMix(seed: seed)
        return (0..<n).map { _ in (0..<k).map { _ in r.nextUnit() * 2 - 0.5 } }
    }

    func output(_ w: [Double], _ k: Int, _ i: Int, _ x: [Double], bias: Double = 0) -> Double {
        (0..<k).reduce(bias) { $0 + w[i * k + $1] * x[$1] }
    }

    @Test func removedInputThatIsAnAffineMixIsReproducedExactly() {
        let m = 2, k = 3
        let x = samples(40, 2, seed: 1).map { v in v + [0.5 * v[0] - 2 * v[1] + 3] }
        let (a, mean) = moments(x)
        let w: [Double] = [1, -2, 0.7, 0.3, 0.4, -1.5]
        let fit = Compensation.solve(w: w, m: m, k: k, a: a, mean: mean, removed: [2], damping: 0, withBias: true)
        let bias = try! #require(fit.bias)
        for v in x {
            for i in 0..<m {
                var kept = fit.w
                kept[i * k + 2] = 0
                #expect(abs(output(kept, k, i, v, bias: bias[i]) - output(w, k, i, v)) < 1e-8)
            }
        }
        // Without the constant the fit cannot absorb the mix's offset of 3.
        let plain = Compensation.solve(w: w, m: m, k: k, a: a, mean: mean, removed: [2], damping: 0, withBias: false)
        #expect(plain.bias == nil)
        var worst = 0.0
        for v in x { var kept = plain.w; kept[2] = 0; worst = max(worst, abs(output(kept, k, 0, v) - output(w, k, 0, v))) }
        #expect(worst > 1e-3)
    }

    @Test(arguments: [true, false])
    func residualIsOrthogonalToWhatIsKept(_ withBias: Bool) {
        let m = 3, k = 6, removed = [1, 4]
        var x = samples(200, k, seed: 7)
        for j in x.indices { x[j][4] += 0.8 * x[j][0] - 0.3 * x[j][5] }  // correlated, as features are
        let (a, mean) = moments(x)
        var r = SplitMix(seed: 11)
        let w = (0..<(m * k)).map { _ in r.nextUnit() * 2 - 1 }
        let fit = Compensation.solve(w: w, m: m, k: k, a: a, mean: mean, removed: removed, damping: 0, withBias: withBias)
        let kept = (0..<k).filter { !removed.contains($0) }
        for i in 0..<m {
            var refit = fit.w, dropped = w
            for q in removed { refit[i * k + q] = 0; dropped[i * k + q] = 0 }
            var dots = [Double](repeating: 0, count: k), sum = 0.0, fitted = 0.0, naive = 0.0
            for v in x {
                let e = output(w, k, i, v) - output(refit, k, i, v, bias: fit.bias?[i] ?? 0)
                for p in kept { dots[p] += e * v[p] }
                sum += e
                fitted += e * e
                let d = output(w, k, i, v) - output(dropped, k, i, v)
                naive += d * d
            }
            for p in kept { #expect(abs(dots[p]) < 1e-8 * Double(x.count), "row \(i), input \(p)") }
            if withBias { #expect(abs(sum) < 1e-8 * Double(x.count)) }
            #expect(fitted < naive, "row \(i): \(fitted) against \(naive)")
            // Kept weights moved; removed ones are left for surgery to cut.
            for q in removed { #expect(fit.w[i * k + q] == w[i * k + q]) }
        }
    }

    @Test func dampingShrinksTheCorrection() {
        let m = 1, k = 4
        let x = samples(50, k, seed: 3)
        let (a, mean) = moments(x)
        let w: [Double] = [0.5, -1, 2, 0.25]
        func change(_ damping: Double) -> Double {
            let fit = Compensation.solve(w: w, m: m, k: k, a: a, mean: mean, removed: [2], damping: damping, withBias: true)
            return [0, 1, 3].reduce(abs(fit.bias![0])) { $0 + abs(fit.w[$1] - w[$1]) }
        }
        #expect(change(0) > change(1) && change(1) > change(100) && change(100) > 0)
    }
}
