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
        var refitted = 0
        for c in measuredConsumers(analysis, factors: factors) {
            let positions = c.member.atoms.indices.filter { removed.contains(analysis.atomClass[c.member.atoms[$0]]) }
            guard !positions.isEmpty else { continue }
            let columns = positions.flatMap { p in (0..<c.taps).map { p * c.taps + $0 } }
            let solved = solve(w: c.layer.matrix, m: c.factors.m, k: c.factors.k, a: c.factors.a, mean: c.factors.mean, removed: columns,
                               damping: damping, withBias: c.layer.hasConstant)
            c.layer.write(solved.w, constant: solved.bias, into: analysis.model.graph)
            refitted += 1
        }
        return refitted
    }

    /// The layers reading pruned channels (consumer members) that K-FAC measured and that
    /// `LayerWeights` can view as M × K: each with its factors, its weights, the BatchNormalization
    /// after it (if any) and how many consecutive patch columns each of the member's channel
    /// positions spans (`taps`: kernel positions, or the spatial positions a flatten spreads it over).
    struct MeasuredConsumer {
        let member: Member
        let factors: KFACFactors
        let layer: LayerWeights
        let normalisation: Node?
        let taps: Int
    }

    static func measuredConsumers(_ analysis: DependencyAnalysis, factors: [String: KFACFactors]) -> [MeasuredConsumer] {
        let graph = analysis.model.graph
        let (nodes, normalisation) = LayerLookup.tables(graph)
        let index = graph.initializerIndex()
        return analysis.members.compactMap { member in
            guard member.role == .consumer, let f = factors[member.tensor], f.mean.count == f.k, let node = nodes[member.node],
                  let layer = LayerWeights(graph: graph, node: node, normalisation: normalisation, index: index),
                  layer.weight == member.tensor, member.axis == (layer.rowsFirst ? 1 : 0), layer.m == f.m, layer.k == f.k,
                  !member.atoms.isEmpty, f.k % member.atoms.count == 0 else { return nil }
            return MeasuredConsumer(member: member, factors: f, layer: layer, normalisation: node.outputs.first.flatMap { normalisation[$0] },
                                    taps: f.k / member.atoms.count)
        }
    }

    /// Ridge refit of a layer to target outputs: with x̃ = (input patch, 1), A = E[x̃ x̃ᵀ]
    /// ((K+1)², constant last) and C = E[x̃ zᵀ] ((K+1) × M) for targets z of the layer's output
    /// (`LayerFitStatistics`), minimises E‖z − b − W′x − Δb‖² + λ‖W′ − W‖² + λ‖Δb‖², b what the
    /// layer's constant adds now (`LayerWeights.offset`), λ = `damping` · mean(diag A_KK). Without a constant (`withConstant` false)
    /// the last row and column are left out. Returns W′ (M × K, row-major) and Δb (nil without a
    /// constant), or nil when the system cannot be factored. When the inputs are the unpruned
    /// layer's own and z its own outputs, W′ = W and Δb = 0 whatever λ.
    public static func refit(w: [Double], offset: [Double], m: Int, k: Int, a: [Double], c: [Double], damping: Double,
                             withConstant: Bool) -> (w: [Double], bias: [Double]?)? {
        let k1 = k + 1, n = withConstant ? k1 : k
        let lambda = damping * (0..<k).reduce(0.0) { $0 + a[$1 * k1 + $1] } / Double(max(k, 1))
        var s = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0..<n { s[i * n + j] = a[i * k1 + j] }
            s[i * n + i] += lambda
        }
        // Right-hand sides, one per output row: E[x̃ (z − b)] + λ (W row, 0); E[x̃] is A's last column.
        var rhs = [Double](repeating: 0, count: m * n)
        for r in 0..<m {
            for i in 0..<n { rhs[r * n + i] = c[i * m + r] - a[i * k1 + k] * offset[r] + (i < k ? lambda * w[r * k + i] : 0) }
        }
        guard cholesky(&s, n) else { return nil }
        for r in 0..<m { rhs.withUnsafeMutableBufferPointer { solveFactored(s, n, $0.baseAddress! + r * n) } }
        let out = (0..<(m * k)).map { rhs[($0 / k) * n + $0 % k] }
        return (out, withConstant ? (0..<m).map { rhs[$0 * n + k] } : nil)
    }
}

/// The weight of a Conv (group 1) or a Gemm with alpha = beta = 1 as an M × K matrix over input
/// patches (rows are outputs), and where a constant added to the layer's output goes: its bias,
/// or, without one, the running mean of the BatchNormalization that follows (a shift of that
/// normalisation's input is a shift of its mean the other way).
public struct LayerWeights {
    /// The weight initializer's name, and the layer's data input and output values.
    public let weight: String, input: String, output: String
    public let m: Int, k: Int
    public let matrix: [Double]
    private let weightIndex: Int
    /// Whether the initializer stores rows (outputs) first; else [K, M] (a Gemm without transB).
    let rowsFirst: Bool
    /// Initializer index and values of the bias or BatchNormalization mean, and the sign of Δb there.
    private let constant: (index: Int, values: [Float], sign: Float)?
    public var hasConstant: Bool { constant != nil }

    /// nil for any other node, or a weight that is not a float initializer.
    init?(graph: Graph, node: Node, normalisation: [String: Node], index: [String: Int]) {
        guard let name = node.input(1), let wi = index[name], let x = node.input(0), let y = node.outputs.first else { return nil }
        let t = graph.initializers[wi]
        switch node.opType {
        case "Conv" where node.int("group", default: 1) == 1 && t.dims.count >= 3: rowsFirst = true
        case "Gemm" where t.dims.count == 2 && node.float("alpha", default: 1) == 1 && node.float("beta", default: 1) == 1
            && node.int("transA", default: 0) == 0:
            rowsFirst = node.int("transB", default: 0) != 0
        default: return nil
        }
        guard t.dataType == .float, let values = t.floatValues() else { return nil }
        let m = rowsFirst ? t.dims[0] : t.dims[1], k = t.elementCount / max(m, 1), byRows = rowsFirst
        (weight, input, output, weightIndex, self.m, self.k) = (name, x, y, wi, m, k)
        matrix = (0..<(m * k)).map { Double(values[byRows ? $0 : ($0 % k) * m + $0 / k]) }
        let biasName = node.input(2).flatMap { index[$0] != nil ? $0 : nil }
        let meanName = biasName == nil ? node.outputs.first.flatMap { normalisation[$0]?.input(3) } : nil
        constant = (biasName ?? meanName).flatMap { name -> (Int, [Float], Float)? in
            guard let i = index[name], let v = graph.initializers[i].floatValues(), v.count == m else { return nil }
            return (i, v, biasName != nil ? 1 : -1)
        }
    }

    /// What the layer's constant adds to its output: its bias; or, where the constant is the
    /// following BatchNormalization's mean, how far that mean lies below the mean of `reference`
    /// (the same layer in the model this one was pruned from, whose output `rows` were kept) —
    /// zeros until a refit moves it. Zeros without a constant.
    public func offset(from reference: LayerWeights?, rows: [Int]) -> [Double] {
        guard let (_, v, sign) = constant else { return Array(repeating: 0, count: m) }
        if sign > 0 { return v.map { Double($0) } }
        guard let r = reference?.constant, rows.count == m, rows.allSatisfy({ $0 < r.values.count }) else { return Array(repeating: 0, count: m) }
        return (0..<m).map { Double(r.values[rows[$0]]) - Double(v[$0]) }
    }

    /// The layer of the node reading `weight` as its weight, in `graph`.
    public static func find(_ weight: String, in graph: Graph) -> LayerWeights? {
        let (_, normalisation) = LayerLookup.tables(graph)
        let index = graph.initializerIndex()
        guard let node = graph.nodes.first(where: { $0.input(1) == weight }) else { return nil }
        return LayerWeights(graph: graph, node: node, normalisation: normalisation, index: index)
    }

    /// Writes the kept part of a refit of the pruned layer into this layer of the same-shaped
    /// masked model: `written` as `write` returned it (weight, and bias or mean), `rows` and
    /// `channels` the masked positions of the pruned layer's outputs and input channels. Entries of
    /// removed outputs and inputs are left as masking set them. False, writing nothing, when the
    /// positions do not fit the two layers.
    public func scatter(_ written: [String: [Float]], pruned: LayerWeights, rows: [Int], channels: [Int], into graph: Graph) -> Bool {
        let index = graph.initializerIndex()
        let taps = pruned.k / max(channels.count, 1)
        guard taps > 0, rows.count == pruned.m, channels.count * taps == pruned.k, rowsFirst == pruned.rowsFirst, k % taps == 0,
              rows.allSatisfy({ $0 >= 0 && $0 < m }), channels.allSatisfy({ $0 >= 0 && $0 < k / taps }) else { return false }
        for (name, v) in written {
            guard let i = index[name], var values = graph.initializers[i].floatValues() else { continue }
            if name == weight {
                for r in 0..<pruned.m {
                    for c in 0..<pruned.k {
                        let (row, col) = (rows[r], channels[c / taps] * taps + c % taps)
                        values[rowsFirst ? row * k + col : col * m + row] = v[pruned.rowsFirst ? r * pruned.k + c : c * pruned.m + r]
                    }
                }
            } else {
                for (r, x) in v.enumerated() { values[rows[r]] = x }
            }
            var t = graph.initializers[i]
            t.replaceBuffer(TensorBuffer(copying: values))
            graph.initializers[i] = t
        }
        return true
    }

    /// Writes `matrix` (M × K) as the weight and adds `delta` (M, when given and the layer has a
    /// constant) to the bias, or subtracts it from the BatchNormalization mean. Returns the
    /// tensors written, by name.
    @discardableResult
    public func write(_ matrix: [Double], constant delta: [Double]?, into graph: Graph) -> [String: [Float]] {
        var values = [Float](repeating: 0, count: m * k)
        for i in 0..<m { for c in 0..<k { values[rowsFirst ? i * k + c : c * m + i] = Float(matrix[i * k + c]) } }
        var t = graph.initializers[weightIndex]
        t.replaceBuffer(TensorBuffer(copying: values))
        graph.initializers[weightIndex] = t
        var written = [weight: values]
        if let (ti, v, sign) = constant, let delta {
            var b = graph.initializers[ti]
            let moved = (0..<m).map { v[$0] + sign * Float(delta[$0]) }
            b.replaceBuffer(TensorBuffer(copying: moved))
            graph.initializers[ti] = b
            written[b.name] = moved
        }
        return written
    }
}
