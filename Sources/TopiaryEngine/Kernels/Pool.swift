import CKernels
import Foundation

/// MaxPool and AveragePool over NCHW with kernel, strides, pads, ceil_mode, dilations (max only).
final class PoolKernel: Kernel {
    let x: Int, y: Int, isMax: Bool, includePad: Bool
    let nc: Int, h: Int, w: Int, ho: Int, wo: Int, kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int, dh: Int, dw: Int
    /// Input position of each maximum (max pooling), written by forward for backward.
    let argmax: UnsafeMutablePointer<Int32>

    init(_ ctx: KernelContext, isMax: Bool) throws {
        let xs = ctx.shape(in: 0), ys = ctx.shape(out: 0)
        guard xs.count == 4, let k = ctx.node.ints("kernel_shape"), k.count == 2 else { throw EngineError.unsupported("\(ctx.node.opType) '\(ctx.node.label)': only 2-D pooling") }
        (x, y, self.isMax) = (ctx.inputs[0], ctx.outputs[0], isMax)
        includePad = ctx.node.int("count_include_pad", default: 0) != 0
        (nc, h, w, ho, wo) = (xs[0] * xs[1], xs[2], xs[3], ys[2], ys[3])
        (kh, kw) = (k[0], k[1])
        let s = ctx.node.ints("strides") ?? [1, 1], d = ctx.node.ints("dilations") ?? [1, 1]
        var pads = ctx.node.ints("pads") ?? [0, 0, 0, 0]
        let autoPad = ctx.node.string("auto_pad", default: "NOTSET")
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            for (a, (inp, out, kk, st)) in [(xs[2], ys[2], kh, s[0]), (xs[3], ys[3], kw, s[1])].enumerated() {
                let total = max(0, (out - 1) * st + kk - inp)
                pads[a] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
            }
        }
        (sh, sw, ph, pw, dh, dw) = (s[0], s[1], pads[0], pads[1], d[0], d[1])
        let outputs = isMax ? max(ys.reduce(1, *), 1) : 1
        argmax = .allocate(capacity: outputs)
        argmax.initialize(repeating: -1, count: outputs)
    }

    deinit { argmax.deallocate() }

    func forward(_ s: Store, training: Bool) {
        let px = s.values[x], py = s.values[y]
        // Planes are independent: split over the cores.
        Parallel.forEach(nc, cost: ho * wo * kh * kw) { planes in
            for plane in planes { self.forward(plane: plane, px, py) }
        }
    }

    private func forward(plane: Int, _ px: UnsafeMutablePointer<Float>, _ py: UnsafeMutablePointer<Float>) {
        let src = px + plane * h * w
        if isMax {
            topiary_maxpool_plane(src, h, w, ho, wo, kh, kw, sh, sw, ph, pw, dh, dw, py + plane * ho * wo, argmax + plane * ho * wo)
            return
        }
        for oy in 0..<ho {
            for ox in 0..<wo {
                var sum: Float = 0
                let cnt = averageWindow(oy, ox) { sum += src[$0] }
                py[(plane * ho + oy) * wo + ox] = cnt > 0 ? sum / Float(cnt) : 0
            }
        }
    }

    /// Visits the input offsets of average-pooling window (oy, ox) inside the image, and returns
    /// the divisor: those positions, plus the padded ones under `count_include_pad`.
    @inline(__always)
    private func averageWindow(_ oy: Int, _ ox: Int, _ visit: (Int) -> Void) -> Int {
        var cnt = 0
        for i in 0..<kh {
            let iy = oy * sh - ph + i
            for j in 0..<kw {
                let ix = ox * sw - pw + j
                if iy >= 0 && iy < h && ix >= 0 && ix < w {
                    visit(iy * w + ix)
                    cnt += 1
                } else if includePad && iy < h + ph && ix < w + pw {
                    cnt += 1
                }
            }
        }
        return cnt
    }

    func backward(_ s: Store) {
        guard let gx = s.grads[x], let gy = s.grads[y] else { return }
        // Every output reaches only its own plane of the input: planes split over the cores.
        Parallel.forEach(nc, cost: ho * wo * kh * kw) { planes in
            for plane in planes { self.backward(plane: plane, gx, gy) }
        }
    }

    private func backward(plane: Int, _ gx: UnsafeMutablePointer<Float>, _ gy: UnsafeMutablePointer<Float>) {
        let dst = gx + plane * h * w
        for oy in 0..<ho {
            for ox in 0..<wo {
                let o = (plane * ho + oy) * wo + ox
                if isMax {
                    if argmax[o] >= 0 { dst[Int(argmax[o])] += gy[o] }
                } else {
                    let cnt = averageWindow(oy, ox) { _ in }
                    guard cnt > 0 else { continue }
                    let g = gy[o] / Float(cnt)
                    _ = averageWindow(oy, ox) { dst[$0] += g }
                }
            }
        }
    }
}

/// Mean over trailing axes (GlobalAveragePool, and ReduceMean over the last axes with keepdims).
final class MeanKernel: Kernel {
    let x: Int, y: Int, outer: Int, inner: Int

    init(x: Int, y: Int, outer: Int, inner: Int) { (self.x, self.y, self.outer, self.inner) = (x, y, outer, inner) }

    func forward(_ s: Store, training: Bool) {
        let px = s.values[x], py = s.values[y], inner = inner
        Parallel.forEach(outer, cost: inner) { rows in
            for o in rows { py[o] = Vec.total(px + o * inner, inner) / Float(inner) }
        }
    }

    func backward(_ s: Store) {
        guard let gx = s.grads[x], let gy = s.grads[y] else { return }
        let inner = inner
        Parallel.forEach(outer, cost: inner) { rows in
            for o in rows { Vec.affine(gx + o * inner, gx + o * inner, 1, gy[o] / Float(inner), inner) }
        }
    }
}

/// Softmax along the last axis (after moving nothing: only last-axis softmax is supported).
final class SoftmaxKernel: Kernel {
    let x: Int, y: Int, rows: Int, cols: Int

    init(x: Int, y: Int, rows: Int, cols: Int) { (self.x, self.y, self.rows, self.cols) = (x, y, rows, cols) }

    func forward(_ s: Store, training: Bool) {
        let px = s.values[x], py = s.values[y]
        for r in 0..<rows {
            let a = px + r * cols, b = py + r * cols
            var mx = -Float.greatestFiniteMagnitude
            for i in 0..<cols { mx = max(mx, a[i]) }
            var sum: Float = 0
            for i in 0..<cols { b[i] = exp(a[i] - mx); sum += b[i] }
            for i in 0..<cols { b[i] /= sum }
        }
    }

    func backward(_ s: Store) {
        guard let gx = s.grads[x], let gy = s.grads[y] else { return }
        let py = s.values[y]
        for r in 0..<rows {
            var dot: Float = 0
            for i in 0..<cols { dot += gy[r * cols + i] * py[r * cols + i] }
            for i in 0..<cols { gx[r * cols + i] += py[r * cols + i] * (gy[r * cols + i] - dot) }
        }
    }
}
