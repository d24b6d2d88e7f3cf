import TopiaryIR

/// Least-squares compensation of the layers that lose input channels (`compensate: true`).
///
/// A consumer layer computes z = W x + b over input patches x. When the entries R of x go (their
/// channels are pruned), the kept weights and the bias are refitted so that, on the calibration
/// data, the layer's pre-activation changes as little as it can:
///
///     minimise E ‖W x − (W'_K x_K + Δb)‖²  →  [W'_K − W_K, Δb] = W_R · C · S⁻¹,
///
/// with S = E[x̃ x̃ᵀ] + λI over the kept entries and a constant, x̃ = (x_K, 1), and C = E[x_R x̃ᵀ]:
/// second moments and means that K-FAC already measures (A = E[x xᵀ], E[x]). λ = `damping` ·
/// mean(diag A_KK) keeps S invertible when inputs are collinear. Δb goes to the layer's bias, or,
/// without one, to the running mean of the BatchNormalization that follows (a shift of its input is
/// a shift of its mean); with neither, the constant is left out of the fit.
public enum Compensation {
    /// The refitted weights (M × K row-major, removed columns unchanged) and the bias change (M),
    /// nil when `withBias` is false. `a` is K × K, `mean` K; `removed` are column indices.
    public static func solve(w: [Double], m: Int, k: Int, a: [Double], mean: [Double], removed: [Int], damping: Double,
                             withBias: Bool) -> (w: [Double], bias: [Double]?) {
        let isRemoved = Set(removed)
        let kept = (0..<k).filter { !isRemoved.contains($0) }
        let r = removed.sorted()
        guard !r.isEmpty, !kept.isEmpty else { return (w, withBias ? Array(repeating: 0, count: m) : nil) }
        let n = kept.count + (withBias ? 1 : 0)
        let lambda = damping * kept.reduce(0.0) { $0 + a[$1 * k + $1] } / Double(kept.count)
        // S (n × n) and C (n × |R|, stored column by column of R as right-hand sides).
        var s = [Double](repeating: 0, count: n * n)
        for (i, p) in kept.enumerated() {
            for (j, q) in kept.enumerated() { s[i * n + j] = a[p * k + q] }
            s[i * n + i] += lambda
        }
        if withBias {
            for (i, p) in kept.enumerated() { s[i * n + n - 1] = mean[p]; s[(n - 1) * n + i] = mean[p] }
            s[n * n - 1] = 1 + lambda
        }
        var rhs = [Double](repeating: 0, count: r.count * n)
        for (c, q) in r.enumerated() {
            for (i, p) in kept.enumerated() { rhs[c * n + i] = a[q * k + p] }
            if withBias { rhs[c * n + n - 1] = mean[q] }
        }
        guard cholesky(&s, n) else { return (w, withBias ? Array(repeating: 0, count: m) : nil) }
        for c in r.indices { rhs.withUnsafeMutableBufferPointer { solveFactored(s, n, $0.baseAddress! + c * n) } }
        // P = S⁻¹ Cᵀ: column c of rhs. Δ_i = Σ_c W[i, R_c] · P[:, c].
        var out = w
        var bias: [Double]? = withBias ? Array(repeating: 0, count: m) : nil
        for i in 0..<m {
            var delta = [Double](repeating: 0, count: n)
            for (c, q) in r.enumerated() {
                let wr = w[i * k + q]
                if wr == 0 { continue }
                for j in 0..<n { delta[j] += wr * rhs[c * n + j] }
            }
            for (j, p) in kept.enumerated() { out[i * k + p] += delta[j] }
            if withBias { bias![i] = delta[n - 1] }
        }
        return (out, bias)
    }

    /// In-place Cholesky factor (lower triangle) of a symmetric positive definite n × n matrix.
    static func cholesky(_ s: inout [Double], _ n: Int) -> Bool {
        s.withUnsafeMutableBufferPointer { p in
            for j in 0..<n {
                var d = p[j * n + j]
                for t in 0..<j { d -= p[j * n + t] * p[j * n + t] }
                guard d > 0 else { return false }
                let l = d.squareRoot()
                p[j * n + j] = l
                for i in (j + 1)..<max(n, j + 1) {
                    var v = p[i * n + j]
                    let ri = p.baseAddress! + i * n, rj = p.baseAddress! + j * n
                    for t in 0..<j { v -= ri[t] * rj[t] }
                    p[i * n + j] = v / l
                }
            }
            return true
        }
    }

    /// Solves L Lᵀ x = b in place, L from `cholesky`.
    static func solveFactored(_ l: [Double], _ n: Int, _ b: UnsafeMutablePointer<Double>) {
        l.withUnsafeBufferPointer { p in
            for i in 0..<n {
                var v = b[i]
                for t in 0..<i { v -= p[i * n + t] * b[t] }
                b[i] = v / p[i * n + i]
            }
            for i in stride(from: n - 1, through: 0, by: -1) {
                var v = b[i]
                for t in (i + 1)..<max(n, i + 1) { v -= p[t * n + i] * b[t] }
                b[i] = v / p[i * n + i]
            }
        }
    }

    /// Refits every Conv (group 1) and Gemm that loses input channels when `removed` classes go,
    /// from the K-FAC statistics of its weight. Returns how many layers were refitted.
    @discardableResult
    static func apply(_ analysis: DependencyAnalysis, removing removed: Set<Int>, factors: [String: KFACFactors], damping: Double) throws -> Int {
        let graph = analysis.model.graph
        let (nodes, normalisation) = LayerLookup.tables(graph)
        let index = graph.initializerIndex()
        var refitted = 0
        for member in analysis.members where member.role == .consumer {
            guard let f = factors[member.tensor], f.mean.count == f.k, let node = nodes[member.node], let wi = index[member.tensor] else { continue }
            let positions = member.atoms.indices.filter { removed.contains(analysis.atomClass[member.atoms[$0]]) }
            guard !positions.isEmpty, !member.atoms.isEmpty, f.k % member.atoms.count == 0 else { continue }
            let weight = graph.initializers[wi]
            guard weight.dataType == .float, let values = weight.floatValues(), weight.elementCount == f.k * f.m else { continue }
            // The weight as an M × K matrix over input patches: rows are outputs.
            let rowsFirst: Bool
            switch node.opType {
            case "Conv" where node.int("group", default: 1) == 1 && member.axis == 1: rowsFirst = true
            case "Gemm" where weight.dims.count == 2 && node.float("alpha", default: 1) == 1 && node.float("beta", default: 1) == 1:
                rowsFirst = member.axis == 1
            default: continue
            }
            let taps = f.k / member.atoms.count
            let columns = positions.flatMap { p in (0..<taps).map { p * taps + $0 } }
            var w = [Double](repeating: 0, count: f.m * f.k)
            for i in 0..<f.m { for c in 0..<f.k { w[i * f.k + c] = Double(values[rowsFirst ? i * f.k + c : c * f.m + i]) } }
            // Where the constant goes: the layer's bias, or the following BatchNormalization's mean.
            let biasName = node.input(2).flatMap { name in index[name].map { _ in name } }
            let meanName = biasName == nil ? node.outputs.first.flatMap { normalisation[$0]?.input(3) } : nil
            let target = (biasName ?? meanName).flatMap { name -> (Int, [Float])? in
                guard let i = index[name], let v = graph.initializers[i].floatValues(), v.count == f.m else { return nil }
                return (i, v)
            }
            let solved = solve(w: w, m: f.m, k: f.k, a: f.a, mean: f.mean, removed: columns, damping: damping, withBias: target != nil)
            var out = values
            for i in 0..<f.m { for c in 0..<f.k { out[rowsFirst ? i * f.k + c : c * f.m + i] = Float(solved.w[i * f.k + c]) } }
            var t = weight
            t.replaceBuffer(TensorBuffer(copying: out))
            graph.initializers[wi] = t
            if let (ti, v) = target, let delta = solved.bias {
                // z ≈ z' + Δb: a bias adds Δb; a BatchNormalization's mean moves by −Δb.
                let sign: Float = biasName != nil ? 1 : -1
                var b = graph.initializers[ti]
                b.replaceBuffer(TensorBuffer(copying: (0..<f.m).map { v[$0] + sign * Float(delta[$0]) }))
                graph.initializers[ti] = b
            }
            refitted += 1
        }
        return refitted
    }
}
