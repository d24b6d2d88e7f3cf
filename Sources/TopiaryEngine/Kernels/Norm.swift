import Foundation

/// BatchNormalization over NC… tensors. Training: batch statistics, running statistics updated
/// with the node's momentum (running = momentum · running + (1 − momentum) · batch, unbiased
/// variance); inference: running statistics.
final class BatchNormKernel: Kernel {
    let x: Int, scale: Int, bias: Int, mean: Int, variance: Int, y: Int
    let n: Int, c: Int, plane: Int
    let eps: Float, momentum: Float
    /// Normalised input of the last training pass, and 1/σ per channel.
    let xhat: UnsafeMutablePointer<Float>
    let invStd: UnsafeMutablePointer<Float>
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
        xhat = ctx.store.allocate(xs.reduce(1, *))
        invStd = ctx.store.allocate(c)
    }

    /// Σ x and Σ x² of `count` floats, in eight float lanes.
    @inline(__always)
    private static func sums(_ r: UnsafePointer<Float>, _ count: Int) -> (Double, Double) {
        var a = SIMD8<Float>(), b = SIMD8<Float>()
        var q = 0
        while q + 8 <= count {
            let v = UnsafeRawPointer(r + q).loadUnaligned(as: SIMD8<Float>.self)
            a += v
            b += v * v
            q += 8
        }
        var s1 = Double(a.sum()), s2 = Double(b.sum())
        while q < count { let t = Double(r[q]); s1 += t; s2 += t * t; q += 1 }
        return (s1, s2)
    }

    /// Σ g and Σ g·x̂ over the `n` planes of one channel (`stride` apart), in sixteen float
    /// lanes reduced once (on small maps a reduction per plane cost more than the sums).
    @inline(__always)
    private static func dots(_ g: UnsafePointer<Float>, _ xh: UnsafePointer<Float>, planes n: Int, stride: Int, _ count: Int) -> (Float, Float) {
        var a = Vec.V(), b = Vec.V()
        var s1: Float = 0, s2: Float = 0
        for sI in 0..<n {
            let gp = g + sI * stride, xp = xh + sI * stride
            var q = 0
            while q + 16 <= count {
                let v = Vec.load(gp + q)
                a += v
                b += v * Vec.load(xp + q)
                q += 16
            }
            while q < count { s1 += gp[q]; s2 += gp[q] * xp[q]; q += 1 }
        }
        return (a.sum() + s1, b.sum() + s2)
    }

    /// Σ (x − k) and Σ (x − k)² over the `n` small planes of one channel, in sixteen float lanes
    /// reduced once, shifted by the channel's first value k so that the variance does not come
    /// from the difference of two large sums. Returns the sums with k added back to the mean.
    @inline(__always)
    private static func shiftedSums(_ x: UnsafePointer<Float>, planes n: Int, stride: Int, _ count: Int) -> (mean: Double, variance: Double) {
        let k = x[0], vk = Vec.V(repeating: k)
        var a = Vec.V(), b = Vec.V()
        var s1: Float = 0, s2: Float = 0
        for sI in 0..<n {
            let xp = x + sI * stride
            var q = 0
            while q + 16 <= count {
                let v = Vec.load(xp + q) - vk
                a += v
                b += v * v
                q += 16
            }
            while q < count { let v = xp[q] - k; s1 += v; s2 += v * v; q += 1 }
        }
        let total = Double(n * count)
        let m = (Double(a.sum()) + Double(s1)) / total
        return (Double(k) + m, max((Double(b.sum()) + Double(s2)) / total - m * m, 0))
    }

    func forward(_ s: Store, training: Bool) {
        let px = s.values[x], py = s.values[y], g = s.values[scale], be = s.values[bias], rm = s.values[mean], rv = s.values[variance]
        let count = Float(n * plane)
        trainedLast = training
        let (n, c, plane, eps, momentum, recalibrated, xhat, invStd) = (n, c, plane, eps, momentum, recalibrated, xhat, invStd)
        // Channels are independent: split over the cores.
        Parallel.forEach(c, cost: n * plane * 4) { channels in
            for ch in channels {
                var mu: Float, v: Float
                if training {
                    if plane <= 256 {
                        let (m, variance) = Self.shiftedSums(px + ch * plane, planes: n, stride: c * plane, plane)
                        (mu, v) = (Float(m), Float(variance))
                    } else {
                        // Per-plane sums in float lanes, accumulated across planes in double.
                        var sum: Double = 0, sq: Double = 0
                        for sI in 0..<n {
                            let (s1, s2) = Self.sums(px + (sI * c + ch) * plane, plane)
                            sum += s1
                            sq += s2
                        }
                        let meanD = sum / Double(count)
                        mu = Float(meanD)
                        v = Float(max(sq / Double(count) - meanD * meanD, 0))
                    }
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
                    let gc = g[ch], bc = be[ch], shift = -mu * inv
                    let vi = Vec.V(repeating: inv), vs = Vec.V(repeating: shift), vg = Vec.V(repeating: gc), vb = Vec.V(repeating: bc)
                    for sI in 0..<n {
                        let base = (sI * c + ch) * plane
                        let xp = px + base, hp = xhat + base, yp = py + base
                        var q = 0
                        while q + 16 <= plane {
                            let h = Vec.load(xp + q) * vi + vs
                            Vec.store(h, hp + q)
                            Vec.store(h * vg + vb, yp + q)
                            q += 16
                        }
                        while q < plane { let h = xp[q] * inv + shift; hp[q] = h; yp[q] = h * gc + bc; q += 1 }
                    }
                } else {
                    // Inference: one multiply-add per element; x̂ is recomputed only if backward runs.
                    let a = g[ch] * inv, b0 = be[ch] - mu * a
                    for sI in 0..<n {
                        let base = (sI * c + ch) * plane
                        Vec.affine(py + base, px + base, a, b0, plane)
                    }
                }
            }
        }
    }

    func backward(_ s: Store) {
        guard let gy = s.grads[y] else { return }
        let g = s.values[scale]
        let gx = s.grads[x], gg = s.grads[scale], gb = s.grads[bias]
        let count = Float(n * plane)
        let (n, c, plane, trainedLast, xhat, invStd) = (n, c, plane, trainedLast, xhat, invStd)
        Parallel.forEach(c, cost: n * plane * 4) { channels in
            for ch in channels {
                let (sumG, sumGX) = Self.dots(gy + ch * plane, xhat + ch * plane, planes: n, stride: c * plane, plane)
                gg?[ch] += sumGX
                gb?[ch] += sumG
                guard let gx else { continue }
                let k = g[ch] * invStd[ch], mG = sumG / count, mGX = sumGX / count
                for sI in 0..<n {
                    let base = (sI * c + ch) * plane
                    let d = gx + base, gyb = gy + base, xh = xhat + base
                    var q = 0
                    if trainedLast {
                        let vk = Vec.V(repeating: k), vm = Vec.V(repeating: mG), vx = Vec.V(repeating: mGX)
                        while q + 16 <= plane {
                            Vec.store(Vec.load(d + q) + vk * (Vec.load(gyb + q) - vm - Vec.load(xh + q) * vx), d + q)
                            q += 16
                        }
                        while q < plane { d[q] += k * (gyb[q] - mG - xh[q] * mGX); q += 1 }
                    } else {
                        let vk = Vec.V(repeating: k)
                        while q + 16 <= plane { Vec.store(Vec.load(d + q) + vk * Vec.load(gyb + q), d + q); q += 16 }
                        while q < plane { d[q] += k * gyb[q]; q += 1 }
                    }
                }
            }
        }
    }
}
