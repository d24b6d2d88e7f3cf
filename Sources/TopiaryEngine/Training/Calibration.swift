import Foundation
import TopiaryIR

/// Statistics of a model on calibration batches, for data-driven pruning criteria: per channel of
/// every activation, Σ over samples of |Σ over positions of activation × ∂loss/∂activation| (the
/// first-order Taylor estimate of the loss change when the channel is removed); per output filter
/// of every trained weight, the L2 norm of its gradient. BatchNormalization runs in inference mode.
public enum Calibration {
    /// K-FAC factors of one layer: A (K × K, input-patch second moment) and G (M × M, output
    /// gradient second moment, per-sample gradients), row-major; and the input patches' mean (K).
    public struct KFAC: Sendable {
        public var k: Int
        public var m: Int
        public var a: [Double]
        public var g: [Double]
        public var mean: [Double]
    }

    public struct Result: Sendable {
        public var channelTaylor: [String: [Double]]
        public var filterGradientNorm: [String: [Double]]
        public var batches: Int
        /// By weight initializer name (Conv with group 1, Gemm).
        public var kfac: [String: KFAC] = [:]
    }

    public static func gather(model: Model, data: Dataset, batches: Int = 4, batch: Int = 64, threads: Int = 2, seed: UInt64 = 0, kfac: Bool = false) throws -> Result {
        setComputeThreads(threads)
        let b = min(batch, data.count)
        guard b > 0 else { throw EngineError.data("no calibration samples") }
        let program = try Program(model: model, batch: b, trainable: true)
        let classes = program.outputShape.last ?? 1
        try program.requireInput(data.sampleShape)
        var rng = SplitMix(seed: seed)
        let order = rng.permutation(data.count)
        let sample = data.sampleSize
        var input = [Float](repeating: 0, count: b * sample)
        var grad = [Float](repeating: 0, count: b * classes)
        var labels = [Int32](repeating: 0, count: b)
        let activations = program.valueIDs.filter { name, id in
            id != program.inputID && program.store.shapes[id].count >= 2 && program.store.shapes[id][0] == b && program.store.grads[id] != nil
                && !program.parameters.contains { $0.id == id }
        }
        var taylor = activations.mapValues { [Double](repeating: 0, count: program.store.shapes[$0][1]) }
        var gradSq = Dictionary(uniqueKeysWithValues: program.parameters.map { ($0.name, [Double](repeating: 0, count: program.store.shapes[$0.id].first ?? 1)) })
        let used = min(batches, max(data.count / b, 1))
        let names = Dictionary(program.parameters.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        var factors: [String: KFAC] = [:]
        var positions: [String: Int] = [:]
        for k in 0..<used {
            for j in 0..<b {
                let idx = order[(k * b + j) % order.count]
                labels[j] = data.labels[idx]
                for t in 0..<sample { input[j * sample + t] = data.images[idx * sample + t] }
            }
            let logits = input.withUnsafeBufferPointer { program.forward($0, training: false) }
            _ = grad.withUnsafeMutableBufferPointer { Loss.crossEntropy(logits: logits, labels: labels[...], classes: classes, options: LossOptions(), teacher: nil, grad: $0) }
            grad.withUnsafeBufferPointer { program.backward($0) }
            for (name, id) in activations {
                let shape = program.store.shapes[id]
                let c = shape[1], inner = shape.dropFirst(2).reduce(1, *)
                let a = program.store.values[id], g = program.store.grads[id]!
                for s in 0..<b {
                    for ch in 0..<c {
                        let base = (s * c + ch) * inner
                        var dot: Double = 0
                        for q in 0..<inner { dot += Double(a[base + q] * g[base + q]) }
                        taylor[name]![ch] += abs(dot)
                    }
                }
            }
            if kfac {
                for kernel in program.kernels {
                    if let conv = kernel as? ConvKernel, let name = names[conv.w] {
                        let shape = conv.kfacShape
                        var f = factors[name] ?? KFAC(k: shape.k, m: shape.m, a: Array(repeating: 0, count: shape.k * shape.k), g: Array(repeating: 0, count: shape.m * shape.m),
                                                      mean: Array(repeating: 0, count: shape.k))
                        if conv.accumulateKFAC(program.store, a: &f.a, g: &f.g, mean: &f.mean) { factors[name] = f; positions[name] = shape.positions }
                    } else if let gemmK = kernel as? GemmKernel, let name = names[gemmK.b] {
                        var f = factors[name] ?? KFAC(k: gemmK.k, m: gemmK.n, a: Array(repeating: 0, count: gemmK.k * gemmK.k), g: Array(repeating: 0, count: gemmK.n * gemmK.n),
                                                      mean: Array(repeating: 0, count: gemmK.k))
                        if gemmK.accumulateKFAC(program.store, a: &f.a, g: &f.g, mean: &f.mean) { factors[name] = f; positions[name] = 1 }
                    }
                }
            }
            for (i, p) in program.parameters.enumerated() {
                let (_, g, n) = program.parameter(i)
                let filters = program.store.shapes[p.id].first ?? 1
                let per = max(n / max(filters, 1), 1)
                for f in 0..<filters { for q in 0..<per { let v = Double(g[f * per + q]); gradSq[p.name]![f] += v * v } }
            }
        }
        // Expectations: A over samples and positions; G over samples, of per-sample gradients (the
        // buffers hold gradients of the batch-mean loss, so each is b times smaller).
        let samples = Double(used * b)
        for (name, var f) in factors {
            let pos = Double(positions[name] ?? 1)
            f.a = f.a.map { $0 / (samples * pos) }
            f.mean = f.mean.map { $0 / (samples * pos) }
            f.g = f.g.map { $0 * Double(b * b) / samples }
            factors[name] = f
        }
        var result = Result(channelTaylor: taylor, filterGradientNorm: gradSq.mapValues { $0.map { $0.squareRoot() } }, batches: used)
        result.kfac = factors
        return result
    }
}
