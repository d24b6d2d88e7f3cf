import Foundation

/// BatchNormalization over NC… tensors. Training: batch statistics, running statistics updated
/// with the node's momentum (running = momentum · running + (1 − momentum) · batch, unbiased
/// variance); inference: running statistics.
final class BatchNormKernel: Kernel {
    let x: Int, scale: Int, bias: Int, mean: Int, variance: Int, y: Int
    let n: Int, c: Int, plane: Int
    let eps: Float, momentum: Float
    var xhat: [Float]
    var invStd: [Float]
    var trainedLast = false
    /// When set, training-mode passes average batch statistics into the running ones (BatchNorm
    /// recalibration) instead of the momentum update; counts the batches seen.
    var recalibrated: Int?

    init(_ ctx: KernelContext) throws {
        let xs = ctx.shape(in: 0)
        guard xs.count >= 2 else { throw EngineError.unsupported("BatchNormalization '\(ctx.node.label)' on rank \(xs.count)") }
        (x, scale, bias, mean, variance, y) = (ctx.inputs[0], ctx.inputs[1], ctx.inputs[2], ctx.inputs[3], ctx.inputs[4], ctx.outputs[0])
        (n, c, plane) = (xs[0], xs[1], xs.dropFirst(2).reduce(1, *))
        eps = ctx.node.float("epsilon", default: 1e-5)
        momentum = ctx.node.float("momentum", default: 0.9)
        xhat = Array(repeating: 0, count: xs.reduce(1, *))
        invStd = Array(repeating: 0, count: c)
    }

    func forward(_ s: Store, training: Bool) {
        let px = s.values[x], py = s.values[y], g = s.values[scale], be = s.values[bias], rm = s.values[mean], rv = s.values[variance]
        let count = Float(n * plane)
        trainedLast = training
        for ch in 0..<c {
            var mu: Float, v: Float
            if training {
                // Per-plane sums in float lanes, accumulated across planes in double.
                var sum: Double = 0, sq: Double = 0
                for sI in 0..<n {
                    let r = px + (sI * c + ch) * plane
                    var a = SIMD8<Float>(), b = SIMD8<Float>()
                    var q = 0
                    while q + 8 <= plane {
                        var v = SIMD8<Float>()
                        for t in 0..<8 { v[t] = r[q + t] }
                        a += v
                        b += v * v
                        q += 8
                    }
                    var s1 = Double(a.sum()), s2 = Double(b.sum())
                    while q < plane { let t = Double(r[q]); s1 += t; s2 += t * t; q += 1 }
                    sum += s1
                    sq += s2
                }
                let meanD = sum / Double(count)
                mu = Float(meanD)
                v = Float(max(sq / Double(count) - meanD * meanD, 0))
                let unbiased = count > 1 ? v * count / (count - 1) : v
                if let k = recalibrated {
                    let w = Float(k) / Float(k + 1)
                    rm[ch] = k == 0 ? mu : w * rm[ch] + (1 - w) * mu
                    rv[ch] = k == 0 ? unbiased : w * rv[ch] + (1 - w) * unbiased
                } else {
                    rm[ch] = momentum * rm[ch] + (1 - momentum) * mu
                    rv[ch] = momentum * rv[ch] + (1 - momentum) * unbiased
                }
            } else {
                (mu, v) = (rm[ch], rv[ch])
            }
            let inv = 1 / (v + eps).squareRoot()
            invStd[ch] = inv
            if training {
                for sI in 0..<n {
                    let base = (sI * c + ch) * plane
                    for q in 0..<plane {
                        let t = (px[base + q] - mu) * inv
                        xhat[base + q] = t
                        py[base + q] = g[ch] * t + be[ch]
                    }
                }
            } else {
                // Inference: one multiply-add per element; x̂ is recomputed only if backward runs.
                let a = g[ch] * inv, b0 = be[ch] - mu * a
                for sI in 0..<n {
                    let base = (sI * c + ch) * plane
                    for q in 0..<plane { py[base + q] = px[base + q] * a + b0 }
                }
            }
        }
    }

    func backward(_ s: Store) {
        guard let gy = s.grads[y] else { return }
        let g = s.values[scale]
        _ = recalibrated
        let gx = s.grads[x], gg = s.grads[scale], gb = s.grads[bias]
        let count = Float(n * plane)
        for ch in 0..<c {
            var sumG: Float = 0, sumGX: Float = 0
            for sI in 0..<n { let base = (sI * c + ch) * plane; for q in 0..<plane { sumG += gy[base + q]; sumGX += gy[base + q] * xhat[base + q] } }
            gg?[ch] += sumGX
            gb?[ch] += sumG
            guard let gx else { continue }
            let k = g[ch] * invStd[ch]
            for sI in 0..<n {
                let base = (sI * c + ch) * plane
                for q in 0..<plane {
                    gx[base + q] += trainedLast ? k * (gy[base + q] - sumG / count - xhat[base + q] * sumGX / count) : k * gy[base + q]
                }
            }
        }
    }
}
