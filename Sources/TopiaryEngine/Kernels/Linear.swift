import Foundation

/// Gemm: Y = alpha · op(A) · op(B) + beta · C, with C broadcast over rows.
final class GemmKernel: Kernel {
    let a: Int, b: Int, c: Int, y: Int
    let m: Int, n: Int, k: Int, transA: Bool, transB: Bool, alpha: Float, beta: Float
    let cMap: [Int32]?

    init(_ ctx: KernelContext) throws {
        let aS = ctx.shape(in: 0), bS = ctx.shape(in: 1)
        guard aS.count == 2, bS.count == 2 else { throw EngineError.unsupported("Gemm '\(ctx.node.label)' on non-matrices") }
        (a, b, c, y) = (ctx.inputs[0], ctx.inputs[1], ctx.has(2) ? ctx.inputs[2] : -1, ctx.outputs[0])
        transA = ctx.node.int("transA", default: 0) != 0
        transB = ctx.node.int("transB", default: 0) != 0
        alpha = ctx.node.float("alpha", default: 1)
        beta = ctx.node.float("beta", default: 1)
        m = transA ? aS[1] : aS[0]
        k = transA ? aS[0] : aS[1]
        n = transB ? bS[0] : bS[1]
        cMap = ctx.has(2) ? try broadcastMap(input: ctx.shape(in: 2), output: [m, n]) : nil
    }

    func forward(_ s: Store, training: Bool) {
        let py = s.values[y]
        if c >= 0 {
            let pc = s.values[c]
            for i in 0..<(m * n) { py[i] = beta * pc[cMap.map { Int($0[i]) } ?? i] }
        }
        gemm(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: s.values[a], lda: transA ? m : k,
             b: s.values[b], ldb: transB ? k : n, beta: c >= 0 ? 1 : 0, c: py, ldc: n)
    }

    func backward(_ s: Store) {
        guard let gy = s.grads[y] else { return }
        if let ga = s.grads[a] {
            // dA = alpha · dY · op(B)^T  (or its transpose when A is transposed)
            if transA {
                gemm(transA: !transB, transB: true, m: k, n: m, k: n, alpha: alpha, a: s.values[b], lda: transB ? k : n, b: gy, ldb: n, beta: 1, c: ga, ldc: m)
            } else {
                gemm(transA: false, transB: !transB, m: m, n: k, k: n, alpha: alpha, a: gy, lda: n, b: s.values[b], ldb: transB ? k : n, beta: 1, c: ga, ldc: k)
            }
        }
        if let gb = s.grads[b] {
            if transB {
                gemm(transA: true, transB: transA, m: n, n: k, k: m, alpha: alpha, a: gy, lda: n, b: s.values[a], ldb: transA ? m : k, beta: 1, c: gb, ldc: k)
            } else {
                gemm(transA: !transA, transB: false, m: k, n: n, k: m, alpha: alpha, a: s.values[a], lda: transA ? m : k, b: gy, ldb: n, beta: 1, c: gb, ldc: n)
            }
        }
        if c >= 0, let gc = s.grads[c] {
            for i in 0..<(m * n) { gc[cMap.map { Int($0[i]) } ?? i] += beta * gy[i] }
        }
    }
}

extension GemmKernel {
    /// K-FAC factors of a Gemm with B as [N, K] (transB) or [K, N]: A += aᵀa (K × K), G += dYᵀdY
    /// (N × N), summed over the batch. Returns false when A is transposed.
    func accumulateKFAC(_ s: Store, a fa: inout [Double], g fg: inout [Double], mean: inout [Double]) -> Bool {
        guard !transA, let gy = s.grads[y] else { return false }
        let x = s.values[a]
        for r in 0..<m {
            for i in 0..<k { mean[i] += Double(x[r * k + i]) }
            for i in 0..<k { let xi = Double(x[r * k + i]); if xi == 0 { continue }; for j in 0..<k { fa[i * k + j] += xi * Double(x[r * k + j]) } }
            for i in 0..<n { let gi = Double(gy[r * n + i]); if gi == 0 { continue }; for j in 0..<n { fg[i * n + j] += gi * Double(gy[r * n + j]) } }
        }
        return true
    }

    /// Least-squares moments against `target` (M rows × N: what each output row should be), as
    /// `ConvKernel.accumulateFit`: A += x̃ x̃ᵀ, C += x̃ zᵀ, x̃ = (input row, 1).
    func accumulateFit(_ s: Store, target: UnsafePointer<Float>, a fa: inout [Double], c fc: inout [Double]) -> Bool {
        guard !transA else { return false }
        let x = s.values[a], k1 = k + 1
        for r in 0..<m {
            let row = x + r * k, z = target + r * n
            for i in 0..<k {
                let xi = Double(row[i])
                fa[i * k1 + k] += xi
                fa[k * k1 + i] += xi
                if xi == 0 { continue }
                for j in 0..<k { fa[i * k1 + j] += xi * Double(row[j]) }
                for j in 0..<n { fc[i * n + j] += xi * Double(z[j]) }
            }
            fa[k * k1 + k] += 1
            for j in 0..<n { fc[k * n + j] += Double(z[j]) }
        }
        return true
    }
}

/// MatMul of an activation [..., M, K] by a matrix [K, N].
final class MatMulKernel: Kernel {
    let a: Int, b: Int, y: Int, rows: Int, k: Int, n: Int

    init(_ ctx: KernelContext) throws {
        let aS = ctx.shape(in: 0), bS = ctx.shape(in: 1)
        guard bS.count == 2, let kk = aS.last, kk == bS[0] else { throw EngineError.unsupported("MatMul '\(ctx.node.label)': only [..., K] × [K, N]") }
        (a, b, y) = (ctx.inputs[0], ctx.inputs[1], ctx.outputs[0])
        (rows, k, n) = (aS.dropLast().reduce(1, *), kk, bS[1])
    }

    func forward(_ s: Store, training: Bool) {
        gemm(m: rows, n: n, k: k, a: s.values[a], lda: k, b: s.values[b], ldb: n, beta: 0, c: s.values[y], ldc: n)
    }

    func backward(_ s: Store) {
        guard let gy = s.grads[y] else { return }
        if let ga = s.grads[a] { gemm(transB: true, m: rows, n: k, k: n, a: gy, lda: n, b: s.values[b], ldb: n, beta: 1, c: ga, ldc: k) }
        if let gb = s.grads[b] { gemm(transA: true, m: k, n: n, k: rows, a: s.values[a], lda: k, b: gy, ldb: n, beta: 1, c: gb, ldc: n) }
    }
}
