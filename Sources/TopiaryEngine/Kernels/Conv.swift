import CKernels
import Foundation
import TopiaryIR

/// 2-D convolution (NCHW) with stride, pads, dilation and groups: im2col over the whole batch and
/// one OpenBLAS GEMM per group; depthwise convolutions run as direct loops.
final class ConvKernel: Kernel {
    let x: Int, w: Int, b: Int, y: Int
    let n: Int, c: Int, h: Int, wd: Int, m: Int, ho: Int, wo: Int
    let kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int, dh: Int, dw: Int, group: Int
    let depthwise: Bool
    /// im2col matrix of every group: [group][K × (n·ho·wo)].
    var cols: [UnsafeMutablePointer<Float>] = []
    /// Output (or its gradient) of one group as [m/group × (n·ho·wo)].
    var tmp: UnsafeMutablePointer<Float>?
    let k: Int, p: Int
    /// Large images: one GEMM per sample straight into the output (no scatter), im2col skipped
    /// for 1×1 stride-1 unpadded convolutions. Small images: one GEMM per group over the batch.
    let perSample: Bool
    /// Per sample, with the samples split over the cores (each product single-threaded).
    let parallelSamples: Bool
    /// Weight-gradient partials of blocks of samples (parallelSamples), and how many fit.
    private var partials: UnsafeMutablePointer<Float>?
    private var partialBlocks = 0
    let pointwise: Bool
    /// Stride 1, dilation 1, output as large as the input: a tap is the input plane shifted by
    /// (i − ph, j − pw), gathered with one contiguous copy (see `gatherTap`).
    let shifted: Bool
    /// Geometry of every kernel tap, row-major (shifted convolutions).
    private var taps: [ShiftedTap] = []
    /// Small shifted convolutions (16 to 256 positions) run forward as a direct kernel (C,
    /// AVX-512: the taps summed in registers straight from the input, no im2col and no product
    /// call per sample); backward rebuilds the columns it needs. Below 16 positions a vector is
    /// mostly empty and the batched product wins (ResNet-18's 2×2 maps: 5× slower direct).
    /// Each tap's offset and, per 16 positions, the lanes it reaches.
    private(set) var direct = false
    /// True when this build has the direct kernel (compiled for AVX-512).
    static var directAvailable: Bool { topiary_conv_direct_available() == 1 }
    private var directShifts: [Int] = []
    private var directMasks: [UInt16] = []
    /// Depthwise and shifted: whole-plane vector passes (see `ShiftedDepthwise`), with a scratch
    /// of three planes per channel. Also stride 2 with "same" pads: its output is every other
    /// row and column of the stride-1 output, computed whole (four times the arithmetic, in
    /// vectors) and subsampled; backward spreads the gradient back onto the full plane.
    let shiftedDepthwise: ShiftedDepthwise?
    private var depthwiseScratch: UnsafeMutablePointer<Float>?
    private var subsampled: Bool { sh == 2 }
    /// 3×3 shifted convolutions of the whole batch through Winograd's transforms (`Winograd`:
    /// F(4×4, 3×3) or F(2×2, 3×3), 4 or 2.25 times fewer multiply-adds than the columns'
    /// product), for both gradients, and forward where that pays (`Winograd.forwardPays`); no
    /// im2col.
    private let winograd: Winograd?
    var usesWinograd: Bool { winograd != nil }
    /// Forward through the transforms too (else by the direct kernel, backward transforming).
    let winogradForward: Bool
    /// One sample on a map of at most `TOPIARY_SKINNY_MAX` positions (ResNet-18's last stage at
    /// batch 1): the product reads each weight once, straight from the row (`topiary_skinny`),
    /// instead of OpenBLAS copying all the weights first. Scratch: the columns transposed.
    private(set) var skinny = false
    private var skinnyColumns: UnsafeMutablePointer<Float>?

    init(_ ctx: KernelContext) throws {
        let xs = ctx.shape(in: 0), ws = ctx.shape(in: 1), ys = ctx.shape(out: 0)
        guard xs.count == 4, ws.count == 4 else { throw EngineError.unsupported("Conv '\(ctx.node.label)': only 2-D convolution (NCHW)") }
        (x, w, b, y) = (ctx.inputs[0], ctx.inputs[1], ctx.has(2) ? ctx.inputs[2] : -1, ctx.outputs[0])
        (n, c, h, wd) = (xs[0], xs[1], xs[2], xs[3])
        (m, ho, wo) = (ws[0], ys[2], ys[3])
        (kh, kw) = (ws[2], ws[3])
        let strides = ctx.node.ints("strides") ?? [1, 1], dil = ctx.node.ints("dilations") ?? [1, 1]
        var pads = ctx.node.ints("pads") ?? [0, 0, 0, 0]
        let autoPad = ctx.node.string("auto_pad", default: "NOTSET")
        if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" {
            for (a, (inp, out, kk, s, d)) in [(h, ys[2], kh, strides[0], dil[0]), (wd, ys[3], kw, strides[1], dil[1])].enumerated() {
                let total = max(0, (out - 1) * s + (kk - 1) * d + 1 - inp)
                pads[a] = autoPad == "SAME_UPPER" ? total / 2 : total - total / 2
            }
        }
        (sh, sw, ph, pw, dh, dw) = (strides[0], strides[1], pads[0], pads[1], dil[0], dil[1])
        group = ctx.node.int("group", default: 1)
        depthwise = group == c && group == m && ws[1] == 1
        k = (c / group) * kh * kw
        p = ho * wo
        // Small images with small weights: one product per sample, samples across the cores,
        // straight into the output (OpenBLAS repacks the weights for every sample, cheap while
        // they fit in cache; on ResNet-18's deep layers it was not).
        parallelSamples = !depthwise && n > 1 && p < 256 && (m / group) * k <= 65_536
        perSample = !depthwise && (p >= 256 || n == 1 || parallelSamples)
        pointwise = kh == 1 && kw == 1 && sh == 1 && sw == 1 && ph == 0 && pw == 0 && ys[2] == h && ys[3] == wd
        shifted = sh == 1 && sw == 1 && dh == 1 && dw == 1 && ys[2] == h && ys[3] == wd
        if shifted { for i in 0..<kh { for j in 0..<kw { taps.append(ShiftedTap(h: h, w: wd, ph: ph, pw: pw, i, j)) } } }
        let directFits = ctx.direct && shifted && group == 1 && !depthwise && (16...256).contains(ho * wo) && topiary_conv_direct_available() == 1
        let trained = ctx.store.grads[ctx.inputs[1]] != nil
        if ctx.direct && shifted && kh == 3 && kw == 3 && group == 1 && !depthwise && Winograd.worthwhile(n: n, h: h, w: wd, c: c, m: m) {
            winogradForward = !directFits || Winograd.forwardPays(n: n, h: h, w: wd, c: c, m: m)
            winograd = winogradForward || trained ? Winograd(ctx.store, n: n, c: c, m: m, h: h, w: wd, ph: ph, pw: pw, weightGradient: trained) : nil
        } else {
            (winogradForward, winograd) = (false, nil)
        }
        direct = directFits && !winogradForward
        if direct {
            let vectors = (ho * wo + 15) / 16
            for i in 0..<kh {
                for j in 0..<kw {
                    let di = i - ph, dj = j - pw
                    directShifts.append(di * wd + dj)
                    for v in 0..<vectors {
                        var bits: UInt16 = 0
                        for lane in 0..<16 {
                            let q = v * 16 + lane, y = q / wd, x = q % wd
                            if q < ho * wo && y + di >= 0 && y + di < h && x + dj >= 0 && x + dj < wd { bits |= 1 << UInt16(lane) }
                        }
                        directMasks.append(bits)
                    }
                }
            }
        }
        let samePads = pads.count == 4 && pads[0] + pads[2] == kh - 1 && pads[1] + pads[3] == kw - 1
        let halved = sh == 2 && sw == 2 && dh == 1 && dw == 1 && samePads && ho == (h + 1) / 2 && wo == (wd + 1) / 2
        shiftedDepthwise = depthwise && (shifted || halved) ? ShiftedDepthwise(h: h, w: wd, kh: kh, kw: kw, ph: ph, pw: pw) : nil
        if let plan = shiftedDepthwise { depthwiseScratch = ctx.store.allocate(c * (2 * plan.scratchCount + plan.p)) }
        skinny = perSample && !parallelSamples && !depthwise && winograd == nil && !direct && p <= Int(TOPIARY_SKINNY_MAX)
        if skinny { skinnyColumns = ctx.store.allocate(p * k) }
        if parallelSamples && winograd == nil {
            partialBlocks = Parallel.workers
            partials = ctx.store.allocate(partialBlocks * m * k)
        }
        if !depthwise && winograd == nil {
            for _ in 0..<group { cols.append(ctx.store.allocate(k * n * p)) }
            if !perSample { tmp = ctx.store.allocate((m / group) * n * p) }
        }
    }

    /// Output columns whose input column ox·sw − pw + j·dw lies inside the image.
    @inline(__always)
    private func columns(_ j: Int) -> Range<Int> {
        let off = j * dw - pw
        let lo = off >= 0 ? 0 : (-off + sw - 1) / sw
        let hi = wd - 1 - off < 0 ? 0 : min(wo, (wd - 1 - off) / sw + 1)
        return lo..<max(lo, hi)
    }

    /// Adds this convolution's K-FAC factors for the current batch (and Σ patches into `mean`): A += Σ patches·patchesᵀ over
    /// every sample and position (K × K, K = C_in/group·kh·kw, group 0 only), G += Σ dY·dYᵀ over
    /// every sample (M × M, summed over positions). Returns false for depthwise and grouped convs.
    func accumulateKFAC(_ s: Store, a: inout [Double], g: inout [Double], mean: inout [Double]) -> Bool {
        guard !depthwise, group == 1, let gy = s.grads[y] else { return false }
        let gg = UnsafeMutablePointer<Float>.allocate(capacity: m * m)
        defer { gg.deallocate() }
        forEachSamplePatches(s) { sI, col, aa in
            for i in 0..<(k * k) { a[i] += Double(aa[i]) }
            for r in 0..<k { mean[r] += rowSum(col + r * p, p) }
            let dout = gy + sI * m * p
            gemm(transB: true, m: m, n: m, k: p, a: dout, lda: p, b: dout, ldb: p, beta: 0, c: gg, ldc: m)
            for i in 0..<(m * m) { g[i] += Double(gg[i]) }
        }
        return true
    }

    /// Adds this layer's least-squares moments against `target` (n samples × M × P: what its output
    /// should be, per sample, output channel and position): A += x̃ x̃ᵀ ((K+1)²) and C += x̃ zᵀ
    /// ((K+1) × M) over every sample and position, x̃ = (input patch, 1). Group-1 convolutions only.
    func accumulateFit(_ s: Store, target: UnsafePointer<Float>, a: inout [Double], c: inout [Double]) -> Bool {
        guard !depthwise, group == 1 else { return false }
        let k1 = k + 1
        let cc = UnsafeMutablePointer<Float>.allocate(capacity: k * m)
        defer { cc.deallocate() }
        forEachSamplePatches(s) { sI, col, aa in
            let z = target + sI * m * p
            gemm(transB: true, m: k, n: m, k: p, a: col, lda: p, b: z, ldb: p, beta: 0, c: cc, ldc: m)
            for i in 0..<k {
                for j in 0..<k { a[i * k1 + j] += Double(aa[i * k + j]) }
                for j in 0..<m { c[i * m + j] += Double(cc[i * m + j]) }
                let t = rowSum(col + i * p, p)
                a[i * k1 + k] += t
                a[k * k1 + i] += t
            }
            a[k * k1 + k] += Double(p)
            for j in 0..<m { c[k * m + j] += rowSum(z + j * p, p) }
        }
        return true
    }

    /// Calls `body` for every sample with its input patches (K × P, im2col) and their second
    /// moment (K × K, col · colᵀ): the statistics of group-1 convolutions.
    private func forEachSamplePatches(_ s: Store, _ body: (_ sample: Int, _ col: UnsafePointer<Float>, _ second: UnsafePointer<Float>) -> Void) {
        let px = s.values[x]
        let col = UnsafeMutablePointer<Float>.allocate(capacity: k * p)
        let aa = UnsafeMutablePointer<Float>.allocate(capacity: k * k)
        defer { col.deallocate(); aa.deallocate() }
        for sI in 0..<n {
            im2colSample(px, sample: sI, group: 0, into: col)
            gemm(transB: true, m: k, n: k, k: p, a: col, lda: p, b: col, ldb: p, beta: 0, c: aa, ldc: k)
            body(sI, col, aa)
        }
    }

    private func rowSum(_ row: UnsafePointer<Float>, _ count: Int) -> Double {
        var t = 0.0
        for q in 0..<count { t += Double(row[q]) }
        return t
    }

    /// Sizes of the K-FAC factors (K, M) and the number of positions per sample.
    var kfacShape: (k: Int, m: Int, positions: Int, weight: Int) { (k, m, p, w) }

    /// One im2col row segment: output plane `out` (ho × wo) of kernel tap (i, j) from `plane`.
    @inline(__always)
    private func gatherTap(_ plane: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, _ i: Int, _ j: Int) {
        if shifted { return ShiftedTap(self, i, j).gather(plane, out) }
        let cols = columns(j)
        let off = j * dw - pw
        for oy in 0..<ho {
            let iy = oy * sh - ph + i * dh
            let row = out + oy * wo
            if iy < 0 || iy >= h || cols.isEmpty {
                row.update(repeating: 0, count: wo)
                continue
            }
            if cols.lowerBound > 0 { row.update(repeating: 0, count: cols.lowerBound) }
            if cols.upperBound < wo { (row + cols.upperBound).update(repeating: 0, count: wo - cols.upperBound) }
            let line = plane + iy * wd + off
            if sw == 1 {
                (row + cols.lowerBound).update(from: line + cols.lowerBound, count: cols.count)
            } else {
                for ox in cols { row[ox] = line[ox * sw] }
            }
        }
    }

    /// The adjoint of `gatherTap`: adds the tap's gradient plane into the input gradient.
    @inline(__always)
    private func scatterTap(_ src: UnsafePointer<Float>, _ plane: UnsafeMutablePointer<Float>, _ i: Int, _ j: Int) {
        if shifted { return ShiftedTap(self, i, j).scatter(src, plane) }
        let cols = columns(j)
        if cols.isEmpty { return }
        let off = j * dw - pw
        for oy in 0..<ho {
            let iy = oy * sh - ph + i * dh
            if iy < 0 || iy >= h { continue }
            let line = plane + iy * wd + off, row = src + oy * wo
            if sw == 1 {
                for ox in cols { line[ox] += row[ox] }
            } else {
                for ox in cols { line[ox * sw] += row[ox] }
            }
        }
    }

    /// Visits every (input channel, kernel tap, sample) of group `g` for the given samples, with
    /// the offset of that tap's row segment in a column matrix whose rows are `rowLength` long
    /// (samples side by side, `p` each) and the offset of the input plane. Input channels touch
    /// disjoint rows and planes, so they are split over the cores.
    private func forEachTap(group g: Int, samples: Range<Int>, rowLength: Int, _ visit: (_ column: Int, _ plane: Int, _ i: Int, _ j: Int) -> Void) {
        let cg = c / group
        withoutActuallyEscaping(visit) { visit in
            Parallel.forEach(cg, cost: kh * kw * samples.count * p) { range in
                for ci in range {
                    for i in 0..<self.kh {
                        for j in 0..<self.kw {
                            let row = ((ci * self.kh + i) * self.kw + j) * rowLength
                            for sI in samples {
                                visit(row + (sI - samples.lowerBound) * self.p, (sI * self.c + g * cg + ci) * self.h * self.wd, i, j)
                            }
                        }
                    }
                }
            }
        }
    }

    /// im2col of the whole batch and group `g` as [K × (n·P)].
    private func im2col(_ src: UnsafePointer<Float>, group g: Int, into col: UnsafeMutablePointer<Float>) {
        if shifted { return shiftedBatch(group: g, gather: true, col: col, planes: UnsafeMutablePointer(mutating: src)) }
        forEachTap(group: g, samples: 0..<n, rowLength: n * p) { gatherTap(src + $1, col + $0, $2, $3) }
    }

    private func col2im(_ col: UnsafePointer<Float>, group g: Int, into dst: UnsafeMutablePointer<Float>) {
        if shifted { return shiftedBatch(group: g, gather: false, col: UnsafeMutablePointer(mutating: col), planes: dst) }
        forEachTap(group: g, samples: 0..<n, rowLength: n * p) { scatterTap(col + $0, dst + $1, $2, $3) }
    }

    /// `gatherTap` / `scatterTap` of a shifted convolution over the whole batch, with each tap's
    /// geometry worked out once for all samples (on small maps the per-sample work is a few
    /// vectors, and the per-call overhead was most of the time).
    private func shiftedBatch(group g: Int, gather: Bool, col: UnsafeMutablePointer<Float>, planes: UnsafeMutablePointer<Float>) {
        let cg = c / group, rowLength = n * p
        Parallel.forEach(cg, cost: kh * kw * n * p) { range in
            for ci in range {
                for i in 0..<self.kh {
                    for j in 0..<self.kw {
                        let row = col + ((ci * self.kh + i) * self.kw + j) * rowLength
                        let tap = ShiftedTap(self, i, j)
                        for sI in 0..<self.n {
                            let out = row + sI * self.p, plane = planes + (sI * self.c + g * cg + ci) * self.h * self.wd
                            if gather { tap.gather(plane, out) } else { tap.scatter(out, plane) }
                        }
                    }
                }
            }
        }
    }

    /// im2col of one sample and group as [K × P].
    private func im2colSample(_ src: UnsafePointer<Float>, sample sI: Int, group g: Int, into col: UnsafeMutablePointer<Float>) {
        if shifted, Parallel.inside { return shiftedSample(sI, group: g, gather: true, col: col, planes: UnsafeMutablePointer(mutating: src)) }
        forEachTap(group: g, samples: sI..<(sI + 1), rowLength: p) { gatherTap(src + $1, col + $0, $2, $3) }
    }

    private func col2imSample(_ col: UnsafePointer<Float>, sample sI: Int, group g: Int, into dst: UnsafeMutablePointer<Float>) {
        if shifted, Parallel.inside { return shiftedSample(sI, group: g, gather: false, col: UnsafeMutablePointer(mutating: col), planes: dst) }
        forEachTap(group: g, samples: sI..<(sI + 1), rowLength: p) { scatterTap(col + $0, dst + $1, $2, $3) }
    }

    /// `gatherTap` / `scatterTap` of one sample of a shifted convolution, on the calling thread
    /// (samples are what is split over the cores), with the taps' geometry worked out at compile
    /// time: on 8×8 images working it out per plane and tap was a fifth of the convolution.
    private func shiftedSample(_ sI: Int, group g: Int, gather: Bool, col: UnsafeMutablePointer<Float>, planes: UnsafeMutablePointer<Float>) {
        let cg = c / group, kk = kh * kw
        taps.withUnsafeBufferPointer { taps in
            for ci in 0..<cg {
                let plane = planes + (sI * c + g * cg + ci) * h * wd
                for t in 0..<kk {
                    let row = col + (ci * kk + t) * p
                    if gather { taps[t].gather(plane, row) } else { taps[t].scatter(row, plane) }
                }
            }
        }
    }

    /// The [K × P] matrix of sample `sI`, group `g`: the input itself for pointwise convolutions.
    private func sampleMatrix(_ px: UnsafeMutablePointer<Float>, _ sI: Int, _ g: Int, fill: Bool) -> UnsafeMutablePointer<Float> {
        if pointwise { return px + (sI * c + g * (c / group)) * p }
        let col = cols[g] + sI * k * p
        if fill { im2colSample(px, sample: sI, group: g, into: col) }
        return col
    }

    /// Depthwise forward of one plane, row by row (any stride, pads, dilation).
    private func depthwiseForward(_ px: UnsafeMutablePointer<Float>, _ pw_: UnsafeMutablePointer<Float>, _ bias: UnsafeMutablePointer<Float>?,
                                  _ py: UnsafeMutablePointer<Float>, sample sI: Int, channel ch: Int) {
        let plane = px + (sI * c + ch) * h * wd, out = py + (sI * c + ch) * p, kern = pw_ + ch * kh * kw
        out.update(repeating: bias?[ch] ?? 0, count: p)
        for i in 0..<kh {
            for j in 0..<kw {
                let wv = kern[i * kw + j], cols = columns(j), off = j * dw - pw
                if cols.isEmpty { continue }
                for oy in 0..<ho {
                    let iy = oy * sh - ph + i * dh
                    if iy < 0 || iy >= h { continue }
                    let line = plane + iy * wd + off, row = out + oy * wo
                    if sw == 1 { for ox in cols { row[ox] += line[ox] * wv } } else { for ox in cols { row[ox] += line[ox * sw] * wv } }
                }
            }
        }
    }

    /// Depthwise backward of one plane, row by row: input gradient and this channel's weight
    /// gradient (samples must come in order for a deterministic sum).
    private func depthwiseBackward(_ s: Store, _ gy: UnsafeMutablePointer<Float>, sample sI: Int, channel ch: Int) {
        let px = s.values[x], pw_ = s.values[w]
        let plane = px + (sI * c + ch) * h * wd, dout = gy + (sI * c + ch) * p, kern = pw_ + ch * kh * kw
        let dplane = s.grads[x].map { $0 + (sI * c + ch) * h * wd }
        let dkern = s.grads[w].map { $0 + ch * kh * kw }
        for i in 0..<kh {
            for j in 0..<kw {
                let wv = kern[i * kw + j], cols = columns(j), off = j * dw - pw
                if cols.isEmpty { continue }
                var acc: Float = 0
                for oy in 0..<ho {
                    let iy = oy * sh - ph + i * dh
                    if iy < 0 || iy >= h { continue }
                    let line = plane + iy * wd + off, row = dout + oy * wo
                    if sw == 1 {
                        for ox in cols { acc += row[ox] * line[ox] }
                        if let d = dplane { let dl = d + iy * wd + off; for ox in cols { dl[ox] += row[ox] * wv } }
                    } else {
                        for ox in cols { acc += row[ox] * line[ox * sw] }
                        if let d = dplane { let dl = d + iy * wd + off; for ox in cols { dl[ox * sw] += row[ox] * wv } }
                    }
                }
                dkern?[i * kw + j] += acc
            }
        }
    }

    func forward(_ s: Store, training: Bool) {
        let px = s.values[x], pw_ = s.values[w], py = s.values[y]
        let bias = b >= 0 ? s.values[b] : nil
        if depthwise {
            if let plan = shiftedDepthwise, let scratch = depthwiseScratch {
                let perChannel = 2 * plan.scratchCount + plan.p
                Parallel.forEach(c, cost: n * plan.p * kh * kw) { range in
                    for ch in range {
                        let own = scratch + ch * perChannel, full = own + 2 * plan.scratchCount
                        for sI in 0..<self.n {
                            let plane = px + (sI * self.c + ch) * plan.p, out = py + (sI * self.c + ch) * self.p
                            plan.forward(plane: plane, weights: pw_ + ch * self.kh * self.kw, bias: bias?[ch] ?? 0,
                                         out: self.subsampled ? full : out, scratch: own)
                            if self.subsampled {
                                for oy in 0..<self.ho { for ox in 0..<self.wo { out[oy * self.wo + ox] = full[2 * oy * self.wd + 2 * ox] } }
                            }
                        }
                    }
                }
                return
            }
            Parallel.forEach(c, cost: n * p * kh * kw) { range in
                for ch in range {
                    for sI in 0..<self.n { self.depthwiseForward(px, pw_, bias, py, sample: sI, channel: ch) }
                }
            }
            return
        }
        if let winograd, winogradForward {
            winograd.forward(x: px, w: pw_, bias: bias, y: py, fixedWeightsGeneration: s.grads[w] == nil ? s.generation : nil)
            return
        }
        if direct {
            directShifts.withUnsafeBufferPointer { shifts in
                directMasks.withUnsafeBufferPointer { masks in
                    nonisolated(unsafe) let shifts = shifts, masks = masks
                    Parallel.blocks(count: n) { sI in
                        topiary_conv_direct(px + sI * self.c * self.p, self.c, self.p, shifts.baseAddress, masks.baseAddress, self.kh * self.kw,
                                            pw_, bias, py + sI * self.m * self.p, self.m)
                    }
                }
            }
            return
        }
        let mg = m / group, np = n * p
        if skinny, let columns = skinnyColumns {
            for sI in 0..<n {
                for g in 0..<group {
                    let col = sampleMatrix(px, sI, g, fill: true), out = py + (sI * m + g * mg) * p
                    for kk in 0..<k { for q in 0..<p { columns[q * k + kk] = col[kk * p + q] } }
                    Parallel.forEach(mg, cost: k * p) { r in
                        topiary_skinny(pw_ + (g * mg + r.lowerBound) * self.k, r.count, self.k, columns, self.p,
                                       bias.map { $0 + g * mg + r.lowerBound }, out + r.lowerBound * self.p, self.p)
                    }
                }
            }
            return
        }
        if perSample {
            let one = { (sI: Int) in
                for g in 0..<self.group {
                    let col = self.sampleMatrix(px, sI, g, fill: true)
                    let out = py + (sI * self.m + g * mg) * self.p
                    if let bias {
                        for oc in 0..<mg { (out + oc * self.p).update(repeating: bias[g * mg + oc], count: self.p) }
                    }
                    gemm(m: mg, n: self.p, k: self.k, a: pw_ + g * mg * self.k, lda: self.k, b: col, ldb: self.p, beta: bias == nil ? 0 : 1, c: out, ldc: self.p)
                }
            }
            // Samples write their own columns and outputs: split over the cores, each product
            // whole on one (a product per sample split in two left im2col on one core; ResNet-18's
            // 7×7 stem at batch 64: 17.3 → 13.9 ms in inference, 12.4 → 10.5 ms training forward).
            if n > 1 { Parallel.blocks(count: n) { one($0) } } else { one(0) }
            return
        }
        guard let tmp else { return }
        for g in 0..<group {
            im2col(px, group: g, into: cols[g])
            gemm(m: mg, n: np, k: k, a: pw_ + g * mg * k, lda: k, b: cols[g], ldb: np, beta: 0, c: tmp, ldc: np)
            Parallel.forEach(mg, cost: n * p) { range in
                for oc in range {
                    let bv = bias?[g * mg + oc] ?? 0
                    for sI in 0..<self.n {
                        Vec.affine(py + (sI * self.m + g * mg + oc) * self.p, tmp + oc * np + sI * self.p, 1, bv, self.p)
                    }
                }
            }
        }
    }

    func backward(_ s: Store) {
        guard let gy = s.grads[y] else { return }
        let gx = s.grads[x], gw = s.grads[w], gb = b >= 0 ? s.grads[b] : nil
        if let gb {
            for sI in 0..<n { for oc in 0..<m { gb[oc] += Vec.total(gy + (sI * m + oc) * p, p) } }
        }
        let px = s.values[x], pw_ = s.values[w]
        if depthwise {
            // Split over channels, samples in order inside: each weight gradient sums the same way
            // whatever the thread count.
            if let plan = shiftedDepthwise, let scratch = depthwiseScratch {
                let gx = s.grads[x], gw = s.grads[w]
                let perChannel = 2 * plan.scratchCount + plan.p
                Parallel.forEach(c, cost: n * plan.p * kh * kw * 2) { range in
                    for ch in range {
                        let own = scratch + ch * perChannel, full = own + 2 * plan.scratchCount
                        if self.subsampled { full.update(repeating: 0, count: plan.p) }
                        for sI in 0..<self.n {
                            let at = (sI * self.c + ch) * plan.p
                            var dout = UnsafePointer(gy + (sI * self.c + ch) * self.p)
                            if self.subsampled {
                                for oy in 0..<self.ho { for ox in 0..<self.wo { full[2 * oy * self.wd + 2 * ox] = dout[oy * self.wo + ox] } }
                                dout = UnsafePointer(full)
                            }
                            plan.backward(plane: px + at, dout: dout, weights: pw_ + ch * self.kh * self.kw, dplane: gx.map { $0 + at },
                                          dweights: gw.map { $0 + ch * self.kh * self.kw }, scratch: own)
                        }
                    }
                }
                return
            }
            Parallel.forEach(c, cost: n * p * kh * kw * 2) { range in
                for ch in range {
                    for sI in 0..<self.n { self.depthwiseBackward(s, gy, sample: sI, channel: ch) }
                }
            }
            return
        }
        if let winograd {
            winograd.backward(dy: gy, x: px, w: pw_, transformed: winogradForward, dx: gx, dw: gw)
            return
        }
        let mg = m / group, np = n * p
        if perSample {
            let px = s.values[x]
            let one = { (sI: Int, gwInto: UnsafeMutablePointer<Float>?) in
                for g in 0..<self.group {
                    let col = self.sampleMatrix(px, sI, g, fill: self.direct)  // a direct forward built no columns
                    let dout = gy + (sI * self.m + g * mg) * self.p
                    if let gwInto { gemm(transB: true, m: mg, n: self.k, k: self.p, a: dout, lda: self.p, b: col, ldb: self.p, beta: 1, c: gwInto + g * mg * self.k, ldc: self.k) }
                    if let gx {
                        if self.pointwise {
                            gemm(transA: true, m: self.k, n: self.p, k: mg, a: pw_ + g * mg * self.k, lda: self.k, b: dout, ldb: self.p, beta: 1,
                                 c: gx + (sI * self.c + g * (self.c / self.group)) * self.p, ldc: self.p)
                        } else {
                            let dcol = self.cols[g] + sI * self.k * self.p  // the forward's columns are no longer needed for this sample
                            gemm(transA: true, m: self.k, n: self.p, k: mg, a: pw_ + g * mg * self.k, lda: self.k, b: dout, ldb: self.p, beta: 0, c: dcol, ldc: self.p)
                            self.col2imSample(dcol, sample: sI, group: g, into: gx)
                        }
                    }
                }
            }
            let blocks = min(Parallel.workers, n, partialBlocks)
            if parallelSamples, blocks > 1, let partials {
                // Fixed blocks of samples, each summing its weight gradient into its own partial,
                // added up in block order: the same result for a given thread count.
                let size = m * k
                if gw != nil { partials.update(repeating: 0, count: blocks * size) }
                Parallel.blocks(of: n, parts: blocks) { b, samples in
                    for sI in samples { one(sI, gw == nil ? nil : partials + b * size) }
                }
                if let gw { for b in 0..<blocks { Vec.add(gw, partials + b * size, size) } }
            } else {
                for sI in 0..<n { one(sI, gw) }
            }
            return
        }
        guard let tmp else { return }
        for g in 0..<group {
            // Gather dY of this group as [mg × n·p].
            Parallel.forEach(mg, cost: n * p) { range in
                for oc in range {
                    for sI in 0..<self.n { Vec.copy(tmp + oc * np + sI * self.p, gy + (sI * self.m + g * mg + oc) * self.p, self.p) }
                }
            }
            if direct { im2col(s.values[x], group: g, into: cols[g]) }  // a direct forward built no columns
            if let gw { gemm(transB: true, m: mg, n: k, k: np, a: tmp, lda: np, b: cols[g], ldb: np, beta: 1, c: gw + g * mg * k, ldc: k) }
            if let gx {
                // Reuse the col buffer for dcol: it is recomputed by the next forward.
                gemm(transA: true, m: k, n: np, k: mg, a: pw_ + g * mg * k, lda: k, b: tmp, ldb: np, beta: 0, c: cols[g], ldc: np)
                col2im(cols[g], group: g, into: gx)
            }
        }
    }
}

/// One kernel tap (i, j) of a stride-1, dilation-1 convolution whose output is as large as its
/// input: output position q reads input q + di·w + dj. Geometry worked out once; `gather` and
/// `scatter` run per plane.
private struct ShiftedTap {
    let wo: Int, p: Int, dj: Int, oy0: Int, oy1: Int, lo: Int, hi: Int, shift: Int
    var empty: Bool { oy1 <= oy0 || abs(dj) >= wo }

    init(_ conv: ConvKernel, _ i: Int, _ j: Int) {
        self.init(h: conv.h, w: conv.wd, ph: conv.ph, pw: conv.pw, i, j)
    }

    /// Tap (i, j) of an h × w image padded by (ph, pw) at the start (output as large as input).
    init(h: Int, w: Int, ph: Int, pw: Int, _ i: Int, _ j: Int) {
        let di = i - ph
        (wo, p, dj) = (w, h * w, j - pw)
        (oy0, oy1) = (max(0, -di), min(h, h - di))
        lo = oy0 * wo + max(0, -dj)
        hi = oy1 * wo - max(0, dj)
        shift = di * w + dj
    }

    /// The tap's im2col plane: one copy over the rows that exist, then the columns that wrapped
    /// around to a neighbouring row set to zero.
    @inline(__always)
    func gather(_ plane: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>) {
        if empty { return out.update(repeating: 0, count: p) }
        if oy0 > 0 { out.update(repeating: 0, count: oy0 * wo) }
        if oy1 * wo < p { (out + oy1 * wo).update(repeating: 0, count: p - oy1 * wo) }
        Vec.copy(out + lo, plane + lo + shift, hi - lo)
        zeroWrapped(out)
    }

    /// The adjoint. The wrapped columns of the source (a scratch column matrix) are zeroed
    /// first, so one contiguous add puts nothing where this tap does not reach; every input
    /// element still gets its taps' contributions in the same order.
    @inline(__always)
    func scatter(_ src: UnsafePointer<Float>, _ plane: UnsafeMutablePointer<Float>) {
        if empty { return }
        zeroWrapped(UnsafeMutablePointer(mutating: src))
        Vec.add(plane + lo + shift, src + lo, hi - lo)
    }

    /// Zeroes, in rows oy0..<oy1, the columns whose input column falls outside the image.
    @inline(__always)
    private func zeroWrapped(_ out: UnsafeMutablePointer<Float>) {
        if dj == 0 { return }
        let (c0, c1) = dj > 0 ? (wo - dj, wo) : (0, -dj)
        for oy in oy0..<oy1 { for ox in c0..<c1 { out[oy * wo + ox] = 0 } }
    }
}
