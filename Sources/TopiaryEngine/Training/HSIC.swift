import Foundation
import TopiaryIR

/// Normalised Hilbert-Schmidt independence criterion between each layer's features and the
/// network's output on a calibration batch (ITPruner's layer importance): Gaussian kernels with
/// the median-distance bandwidth, nHSIC(X, Y) = HSIC(X, Y) / √(HSIC(X, X) · HSIC(Y, Y)).
public enum HSIC {
    /// Gram matrix of the rows of `x` (n × d), Gaussian kernel with σ² = median squared distance.
    static func gram(_ x: [Double], n: Int, d: Int) -> [Double] {
        var sq = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in (i + 1)..<max(n, i + 1) where j < n {
                var s = 0.0
                for k in 0..<d { let t = x[i * d + k] - x[j * d + k]; s += t * t }
                sq[i * n + j] = s
                sq[j * n + i] = s
            }
        }
        var off: [Double] = []
        for i in 0..<n { for j in (i + 1)..<max(n, i + 1) where j < n && sq[i * n + j] > 0 { off.append(sq[i * n + j]) } }
        off.sort()
        let sigma2 = off.isEmpty ? 1 : off[off.count / 2]
        return sq.map { exp(-$0 / (2 * sigma2)) }
    }

    /// HSIC of two Gram matrices: tr(K H L H) / (n − 1)², H the centring matrix.
    static func hsic(_ k: [Double], _ l: [Double], n: Int) -> Double {
        func centred(_ m: [Double]) -> [Double] {
            var rows = [Double](repeating: 0, count: n), all = 0.0
            for i in 0..<n { for j in 0..<n { rows[i] += m[i * n + j] } }
            for i in 0..<n { all += rows[i] }
            var out = m
            for i in 0..<n { for j in 0..<n { out[i * n + j] = m[i * n + j] - rows[i] / Double(n) - rows[j] / Double(n) + all / Double(n * n) } }
            return out
        }
        let kc = centred(k), lc = centred(l)
        var s = 0.0
        for i in 0..<(n * n) { s += kc[i] * lc[i] }
        return s / Double((n - 1) * (n - 1))
    }

    /// nHSIC between features `x` (n × dx) and `y` (n × dy).
    public static func normalised(_ x: [Double], dx: Int, _ y: [Double], dy: Int, n: Int) -> Double {
        let k = gram(x, n: n, d: dx), l = gram(y, n: n, d: dy)
        let kl = hsic(k, l, n: n), kk = hsic(k, k, n: n), ll = hsic(l, l, n: n)
        return kk > 0 && ll > 0 ? kl / (kk * ll).squareRoot() : 0
    }

    /// nHSIC of every activation (rank ≥ 2, by value name) with the model's output, on one batch of
    /// `batch` samples of `data` (inference mode).
    public static func layerImportance(model: Model, data: Dataset, batch: Int = 64, threads: Int = 2, seed: UInt64 = 0) throws -> [String: Double] {
        setComputeThreads(threads)
        let n = min(batch, data.count)
        guard n >= 4 else { throw EngineError.data("HSIC needs at least 4 calibration samples") }
        // Compiled as trainable so BatchNormalization is not folded away: the layer outputs keep
        // their names (it runs in inference mode all the same).
        let program = try Program(model: model, batch: n, trainable: true)
        try program.requireInput(data.sampleShape)
        var rng = SplitMix(seed: seed)
        let order = rng.permutation(data.count)
        let sample = data.sampleSize
        var input = [Float](repeating: 0, count: n * sample)
        for j in 0..<n { for t in 0..<sample { input[j * sample + t] = data.images[order[j] * sample + t] } }
        let out: [Double] = input.withUnsafeBufferPointer { program.forward($0).map { Double($0) } }
        let dy = out.count / n
        var result: [String: Double] = [:]
        for (name, id) in program.valueIDs where id != program.inputID && !program.outputIDs.contains(id) {
            let shape = program.store.shapes[id]
            guard shape.count >= 2, shape[0] == n, !program.parameters.contains(where: { $0.id == id }) else { continue }
            let d = shape.dropFirst().reduce(1, *)
            let x: [Double] = UnsafeBufferPointer(start: program.store.values[id], count: n * d).map { Double($0) }
            result[name] = normalised(x, dx: d, out, dy: dy, n: n)
        }
        return result
    }
}
