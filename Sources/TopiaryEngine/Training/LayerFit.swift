import Foundation
import TopiaryIR

/// Least-squares moments of one layer of a pruned model against the unpruned model: with x̃ the
/// pruned layer's input patch and a constant 1, and z what the unpruned layer outputs on the same
/// sample at the output channels pruning kept, A = E[x̃ x̃ᵀ] ((K+1)², the constant last) and
/// C = E[x̃ zᵀ] ((K+1) × M), over calibration samples and positions.
public struct LayerFitStatistics: Sendable {
    /// Entries of an input patch (without the constant) and outputs.
    public var k: Int
    public var m: Int
    public var a: [Double]
    public var c: [Double]
}

/// Runs a pruned model (the student) and the model it was pruned from (the teacher) side by side
/// on calibration batches, in inference mode, and measures for any Conv (group 1) or Gemm of the
/// student how its input relates to what the teacher's layer of the same name outputs — the
/// statistics of reconstruction, refitting each layer to the unpruned model's outputs on the
/// pruned network's own inputs. `load` puts refitted weights into the student, so that the
/// layers after it are measured on what it now computes.
public final class LayerFitProbe {
    private let student: Program, teacher: Program
    private let batches: [[Float]]
    private let kept: [String: [Int]]
    /// Student kernel and output value name, by weight initializer name.
    private var kernels: [String: (kernel: any Kernel, output: String)] = [:]
    /// Weight names of the layers that can be refitted, in schedule order: Conv with group 1 and
    /// Gemm, whose input is not the data input (which pruning never changes) and still has
    /// channels (a slice can lose all of them).
    public private(set) var layers: [String] = []

    /// `kept` gives, for activations that lost channels, the teacher positions of the student's
    /// channels (`PruningResult.keptChannels`).
    public init(student: Model, teacher: Model, kept: [String: [Int]], data: Dataset, batches: Int = 4, batch: Int = 64,
                seed: UInt64 = 0, threads: Int = 2) throws {
        setComputeThreads(threads)
        let b = min(batch, data.count)
        guard b > 0 else { throw EngineError.data("no calibration samples") }
        // Compiled as trainable so BatchNormalization is not folded into the layers before it:
        // a layer's output is its own pre-activation, in both programs (run in inference mode).
        self.student = try Program(model: student, batch: b, trainable: true)
        self.teacher = try Program(model: teacher, batch: b, trainable: true)
        try self.student.requireInput(data.sampleShape)
        var rng = SplitMix(seed: seed)
        self.batches = data.batches(max(1, min(batches, data.count / b)), size: b, order: rng.permutation(data.count))
        self.kept = kept
        let names = Dictionary(self.student.parameters.map { ($0.id, $0.name) }, uniquingKeysWith: { a, _ in a })
        let valueNames = Dictionary(self.student.valueIDs.map { ($0.value, $0.key) }, uniquingKeysWith: { a, _ in a })
        for kernel in self.student.kernels {
            let found: (weight: Int, input: Int, output: Int)?
            if let conv = kernel as? ConvKernel, !conv.depthwise, conv.group == 1 { found = (conv.w, conv.x, conv.y) }
            else if let gemm = kernel as? GemmKernel, !gemm.transA { found = (gemm.b, gemm.a, gemm.y) }
            else { found = nil }
            guard let found, found.input != self.student.inputID, self.student.store.shapes[found.input].dropFirst().reduce(1, *) > 0, let name = names[found.weight], let out = valueNames[found.output],
                  let t = self.teacher.valueIDs[out] else { continue }
            let ss = self.student.store.shapes[found.output], ts = self.teacher.store.shapes[t]
            guard ss.count == ts.count, ss.count >= 2, Array(ss.dropFirst(2)) == Array(ts.dropFirst(2)),
                  (kept[out] ?? Array(0..<ts[1])).count == ss[1] else { continue }
            kernels[name] = (kernel, out)
            layers.append(name)
        }
    }

    /// The moments of the layer whose weight is `layer`, on the student's current weights; nil
    /// for a layer not in `layers`.
    public func statistics(of layer: String) -> LayerFitStatistics? {
        guard let (kernel, output) = kernels[layer], let s = student.valueIDs[output], let t = teacher.valueIDs[output] else { return nil }
        let ss = student.store.shapes[s], ts = teacher.store.shapes[t]
        let n = ss[0], m = ss[1], plane = ss.dropFirst(2).reduce(1, *), teacherChannels = ts[1]
        let map = kept[output] ?? Array(0..<m)
        let k = (kernel as? ConvKernel)?.k ?? (kernel as? GemmKernel)?.k ?? 0
        var stats = LayerFitStatistics(k: k, m: m, a: Array(repeating: 0, count: (k + 1) * (k + 1)), c: Array(repeating: 0, count: (k + 1) * m))
        var target = [Float](repeating: 0, count: n * m * plane)
        for input in batches {
            input.withUnsafeBufferPointer { x in
                _ = teacher.forward(x, training: false)
                _ = student.forward(x, training: false)
            }
            // The teacher's output at the kept channels, in the student's channel order.
            let source = teacher.store.values[t]
            target.withUnsafeMutableBufferPointer { dst in
                for sI in 0..<n {
                    for (j, q) in map.enumerated() {
                        (dst.baseAddress! + (sI * m + j) * plane).update(from: source + (sI * teacherChannels + q) * plane, count: plane)
                    }
                }
            }
            target.withUnsafeBufferPointer { z in
                if let conv = kernel as? ConvKernel {
                    _ = conv.accumulateFit(student.store, target: z.baseAddress!, a: &stats.a, c: &stats.c)
                } else if let gemm = kernel as? GemmKernel {
                    _ = gemm.accumulateFit(student.store, target: z.baseAddress!, a: &stats.a, c: &stats.c)
                }
            }
        }
        let count = stats.a[(k + 1) * (k + 1) - 1]
        if count > 0 {
            stats.a = stats.a.map { $0 / count }
            stats.c = stats.c.map { $0 / count }
        }
        return stats
    }

    /// Replaces student weights (and BatchNormalization statistics) by name.
    public func load(_ weights: [String: [Float]]) { student.load(weights: weights) }
}

extension Dataset {
    /// `count` batches of `size` images, taken in `order` (wrapping around when the set is small).
    func batches(_ count: Int, size: Int, order: [Int]) -> [[Float]] {
        let sample = sampleSize
        return (0..<count).map { k in
            var x = [Float](repeating: 0, count: size * sample)
            for j in 0..<size {
                let idx = order[(k * size + j) % order.count]
                for t in 0..<sample { x[j * sample + t] = images[idx * sample + t] }
            }
            return x
        }
    }
}
