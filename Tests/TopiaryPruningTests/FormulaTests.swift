import Testing
import TopiaryIR
import TopiaryTestSupport
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

/// With a BatchNormalization after the layer, removing channel i moves z_i = w_i·x + b_i to the
/// c_i where the normalised output is zero: the importance must equal ½ G_ii · E[(z_i − c_i)²]
/// computed from the patches themselves, and c_i must zero the BatchNormalization's output.
@Suite struct HessianRemovalTests {
    typealias B = GraphBuilder

    @Test func shiftedImportanceEqualsTheDirectExpectation() throws {
        let k = 3, m = 2
        let patches: [[Double]] = [[1, 0.5, -2], [0.3, -1, 0.8], [2, 2, 0.1], [-0.7, 0.2, 1.5]]
        var a = [Double](repeating: 0, count: k * k), mean = [Double](repeating: 0, count: k)
        for x in patches {
            for p in 0..<k { mean[p] += x[p] / Double(patches.count); for q in 0..<k { a[p * k + q] += x[p] * x[q] / Double(patches.count) } }
        }
        let g: [Double] = [0.7, 0.3, 0.3, 1.9]
        let w: [Double] = [1, -2, 0.5, 0.3, 0.4, -1]
        let b: [Double] = [0.25, -0.5]
        // BatchNormalization after the layer.
        let gamma: [Float] = [0.8, -1.3], beta: [Float] = [0.4, 0.9], mu: [Float] = [0.1, -0.2], variance: [Float] = [1.5, 0.6]
        let nodes = [B.node("Conv", ["x", "w", "b"], ["z"]), B.node("BatchNormalization", ["z", "g", "be", "mu", "var"], ["y"])]
        let model = B.model(nodes, inputs: [B.value("x", [1, k, 1, 1])], outputs: ["y"], initializers: [
            Tensor(name: "w", floats: w.map { Float($0) }, dims: [m, k, 1, 1]), Tensor(name: "b", floats: b.map { Float($0) }, dims: [m]),
            Tensor(name: "g", floats: gamma, dims: [m]), Tensor(name: "be", floats: beta, dims: [m]),
            Tensor(name: "mu", floats: mu, dims: [m]), Tensor(name: "var", floats: variance, dims: [m]),
        ])
        let analysis = try DependencyAnalysis(model: model)
        let offsets = HessianImportance.offsets(of: model.graph.nodes[0], channels: m, graph: analysis.graph,
                                                normalisation: ["z": model.graph.nodes[1]])
        let fast = HessianImportance.rowImportance(w: w, factors: KFACFactors(k: k, m: m, a: a, g: g, mean: mean), damping: 0, offsets: offsets)
        for i in 0..<m {
            let c = b[i] - offsets[i]
            // c zeroes the normalised output.
            let sigma = (Double(variance[i]) + 1e-5).squareRoot()
            #expect(abs(Double(gamma[i]) * (c - Double(mu[i])) / sigma + Double(beta[i])) < 1e-6)
            var expectation = 0.0
            for x in patches {
                let z = (0..<k).reduce(b[i]) { $0 + w[i * k + $1] * x[$1] }
                expectation += (z - c) * (z - c) / Double(patches.count)
            }
            #expect(abs(fast[i] - 0.5 * g[i * m + i] * expectation) < 1e-9 * max(1, expectation), "row \(i)")
        }
        // Without the offsets, the plain quadratic form (the removed channel's output is z).
        let plain = HessianImportance.rowImportance(w: w, factors: KFACFactors(k: k, m: m, a: a, g: g, mean: mean), damping: 0)
        #expect(plain != fast)
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
