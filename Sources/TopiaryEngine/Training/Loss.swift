import Foundation

/// Softmax cross-entropy on logits, with optional label smoothing and distillation (KL divergence
/// between temperature-softened teacher and student distributions, scaled by T²).
public struct LossOptions: Sendable, Codable, Equatable {
    public var labelSmoothing: Float = 0
    /// Weight of the distillation term (0: none); the hard-label term gets 1 − weight.
    public var distillWeight: Float = 0
    public var temperature: Float = 4
    /// Weight of feature distillation (0: none): the mean, over the feature maps the student
    /// shares with its teacher, of their squared difference relative to the teacher's energy.
    public var featureWeight: Float = 0

    public init(labelSmoothing: Float = 0, distillWeight: Float = 0, temperature: Float = 4, featureWeight: Float = 0) {
        self.labelSmoothing = labelSmoothing
        self.distillWeight = distillWeight
        self.temperature = temperature
        self.featureWeight = featureWeight
    }
}

enum Loss {
    /// Mean loss over the batch; writes d(loss)/d(logits) into `grad`. Also counts correct top-1.
    static func crossEntropy(logits: UnsafeBufferPointer<Float>, labels: ArraySlice<Int32>, classes: Int, options: LossOptions,
                             teacher: UnsafeBufferPointer<Float>?, grad: UnsafeMutableBufferPointer<Float>) -> (loss: Double, correct: Int) {
        let n = labels.count
        var total = 0.0, correct = 0
        let eps = options.labelSmoothing
        let wHard = teacher == nil ? 1 : 1 - options.distillWeight
        let T = options.temperature
        var p = [Float](repeating: 0, count: classes), q = [Float](repeating: 0, count: classes)
        for (r, label) in labels.enumerated() {
            let z = logits.baseAddress! + r * classes
            let y = Int(label)
            softmax(z, classes, 1, into: &p)
            var best = 0
            for k in 1..<classes where z[k] > z[best] { best = k }
            if best == y { correct += 1 }
            var l = 0.0
            for k in 0..<classes {
                let target = (k == y ? 1 - eps : 0) + eps / Float(classes)
                l -= Double(target) * log(Double(max(p[k], 1e-12)))
                grad[r * classes + k] = wHard * (p[k] - target) / Float(n)
            }
            total += Double(wHard) * l
            if let teacher, options.distillWeight > 0 {
                var ps = [Float](repeating: 0, count: classes)
                softmax(z, classes, T, into: &ps)
                softmax(teacher.baseAddress! + r * classes, classes, T, into: &q)
                var kl = 0.0
                for k in 0..<classes {
                    kl += Double(q[k]) * (log(Double(max(q[k], 1e-12))) - log(Double(max(ps[k], 1e-12))))
                    grad[r * classes + k] += options.distillWeight * T * (ps[k] - q[k]) / Float(n)
                }
                total += Double(options.distillWeight * T * T) * kl
            }
        }
        return (total / Double(n), correct)
    }

    static func softmax(_ z: UnsafePointer<Float>, _ n: Int, _ t: Float, into out: inout [Float]) {
        var mx = -Float.greatestFiniteMagnitude
        for k in 0..<n { mx = max(mx, z[k] / t) }
        var sum: Float = 0
        for k in 0..<n { out[k] = exp(z[k] / t - mx); sum += out[k] }
        for k in 0..<n { out[k] /= sum }
    }
}
