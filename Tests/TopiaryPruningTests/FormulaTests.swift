import Testing
@testable import TopiaryPruning

@Suite struct FormulaTests {
    @Test func precedenceAndFunctions() throws {
        let f = try Formula.parse("l2 * abs(bn_gamma) + 2 ^ 3 - max(1, mean) / -2")
        #expect(f.uses == ["l2", "bn_gamma", "mean"])
        #expect(f.evaluate(["l2": 2, "bn_gamma": -3, "mean": 4]) == 2 * 3 + 8 - 4 / -2)
    }

    @Test(arguments: [
        ("l2 +", 5, "expected a number"),
        ("l2 * (bn_gamma", 15, "expected ')'"),
        ("weight", 1, "unknown variable 'weight'"),
        ("abss(l1)", 1, "unknown function 'abss'"),
        ("min(l1)", 1, "takes 2 argument(s)"),
        ("l1 $ 2", 4, "unexpected '$'"),
    ])
    func errorsCarryTheColumn(_ text: String, _ column: Int, _ message: String) {
        #expect {
            _ = try Formula.parse(text)
        } throws: { e in
            guard let e = e as? FormulaError else { return false }
            return e.column == column && e.message.contains(message)
        }
    }

    @Test func formulaNeedingDataSaysSo() throws {
        let c = try Criteria.parse("expr: taylor * l2")
        #expect(c.requirements.contains(.gradients))
        #expect(try Criteria.parse("expr: l1").requirements.isEmpty)
    }
}

/// NAP's importance of removing row i equals the quadratic form ½ vec(ΔW)ᵀ (A ⊗ G) vec(ΔW) with
/// ΔW the matrix holding only row i: built here from the full Kronecker product.
@Suite struct HessianImportanceTests {
    @Test func diagonalBlockEqualsTheKroneckerQuadraticForm() {
        let k = 3, m = 2
        let a: [Double] = [2, 0.5, 0.1, 0.5, 1, 0.2, 0.1, 0.2, 3]
        let g: [Double] = [0.7, 0.3, 0.3, 1.9]
        let w: [Double] = [1, -2, 0.5, 0.3, 0.4, -1]
        let f = KFACFactors(k: k, m: m, a: a, g: g)
        let fast = HessianImportance.rowImportance(w: w, factors: f, damping: 0)
        for i in 0..<m {
            // vec(ΔW) in row-major (m, k) order; (A ⊗ G) indexed [(p, r), (q, s)] = A[p, q] G[r, s] with W[r, p].
            var quad = 0.0
            for r in 0..<m { for p in 0..<k { for s in 0..<m { for q in 0..<k {
                let dr = r == i ? w[r * k + p] : 0, ds = s == i ? w[s * k + q] : 0
                quad += dr * a[p * k + q] * g[r * m + s] * ds
            } } } }
            #expect(abs(fast[i] - 0.5 * quad) < 1e-12)
        }
    }
}

@Suite struct FormulaTextTests {
    @Test(arguments: ["l2 * abs(bn_gamma) + 2 ^ 3", "-(l1) / max(fan_in, 0.5)", "sqrt(taylor * min(l2, fan_in)) - log(std)"])
    func textParsesBackToTheSameFormula(_ source: String) throws {
        let f = try Formula.parse(source)
        #expect(try Formula.parse(f.text) == f)
        #expect(f.size > 1)
    }
}
