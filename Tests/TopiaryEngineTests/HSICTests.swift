import Foundation
import Testing
@testable import TopiaryEngine
import TopiaryIR

/// HSIC against Gretton's expanded form, computed independently here, and its invariances.
@Suite struct HSICTests {
    func random(_ n: Int, seed: UInt64) -> [Double] {
        var r = SplitMix(seed: seed)
        return (0..<n).map { _ in r.nextUnit() * 2 - 1 }
    }

    /// tr(KL)/(n−1)² − 2/(n(n−1)²) 1ᵀKL1 + 1/(n²(n−1)²) (1ᵀK1)(1ᵀL1).
    func expanded(_ k: [Double], _ l: [Double], n: Int) -> Double {
        var tr = 0.0, kl1 = 0.0, k1 = 0.0, l1 = 0.0
        for i in 0..<n {
            for j in 0..<n {
                tr += k[i * n + j] * l[j * n + i]
                k1 += k[i * n + j]
                l1 += l[i * n + j]
            }
        }
        for i in 0..<n {
            var rowK = 0.0, colL = 0.0
            for j in 0..<n { rowK += k[j * n + i]; colL += l[i * n + j] }
            kl1 += rowK * colL
        }
        let m = Double(n), d = (m - 1) * (m - 1)
        return tr / d - 2 * kl1 / (m * d) + k1 * l1 / (m * m * d)
    }

    @Test func matchesTheExpandedForm() {
        let n = 12, x = random(n * 5, seed: 1), y = random(n * 3, seed: 2)
        let k = HSIC.gram(x, n: n, d: 5), l = HSIC.gram(y, n: n, d: 3)
        let ours = HSIC.hsic(k, l, n: n), direct = expanded(k, l, n: n)
        #expect(abs(ours - direct) <= 1e-12 * max(1, abs(direct)))
        #expect(ours > 0)
    }

    @Test func normalisedIsOneForItselfAndScaleInvariant() {
        let n = 16, x = random(n * 4, seed: 3), y = random(n * 2, seed: 4)
        #expect(abs(HSIC.normalised(x, dx: 4, x, dy: 4, n: n) - 1) < 1e-12)
        let a = HSIC.normalised(x, dx: 4, y, dy: 2, n: n)
        let b = HSIC.normalised(x.map { $0 * 7 }, dx: 4, y, dy: 2, n: n)
        #expect(abs(a - b) < 1e-9)
        #expect(a < 0.9)
        // A function of x depends on x more than independent noise does.
        var f: [Double] = []
        for i in 0..<n { f.append(2 * x[i * 4] + x[i * 4 + 1]) }
        #expect(HSIC.normalised(x, dx: 4, f, dy: 1, n: n) > HSIC.normalised(x, dx: 4, random(n, seed: 9), dy: 1, n: n))
    }
}
