/// A depthwise convolution whose output is as large as its input (stride 1, dilation 1): the
/// output plane is the sum over kernel taps of w_t times the input plane shifted by
/// (i − ph)·W + (j − pw), with the positions a tap does not reach (off the image, or wrapped
/// round to the neighbouring row) left out. Each plane is first copied into a scratch with
/// margins, so every shifted read stays inside it; then every tap is a pass of 16-float vectors
/// over the whole plane, however small the image (the row-by-row loops this replaces spent most
/// of their time on 4×4 and 8×8 maps deciding where rows start and end).
struct ShiftedDepthwise {
    let p: Int, taps: Int, margin: Int
    /// Offset of each tap's input from the output position.
    let shifts: [Int]
    /// taps × p: 1 where the tap reads a pixel of the image, else 0 (floats: a float comparison
    /// makes a vector mask, a byte one was taken apart lane by lane).
    let reach: [Float]

    init(h: Int, w: Int, kh: Int, kw: Int, ph: Int, pw: Int) {
        p = h * w
        taps = kh * kw
        var shifts: [Int] = [], reach: [Float] = []
        for i in 0..<kh {
            for j in 0..<kw {
                let di = i - ph, dj = j - pw
                shifts.append(di * w + dj)
                for y in 0..<h {
                    for x in 0..<w { reach.append(y + di >= 0 && y + di < h && x + dj >= 0 && x + dj < w ? 1 : 0) }
                }
            }
        }
        self.shifts = shifts
        self.reach = reach
        margin = shifts.map(abs).max() ?? 0
    }

    /// Floats of scratch a plane needs (twice that for backward). Margins need no particular
    /// contents: what is read there is always masked out.
    var scratchCount: Int { p + 2 * margin }

    /// out = bias + Σ_t w[t] · shift_t(plane), over reached positions. Each 16 outputs are summed
    /// over every tap in a register, then stored once.
    func forward(plane: UnsafePointer<Float>, weights: UnsafePointer<Float>, bias: Float, out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>) {
        let mid = scratch + margin
        mid.update(from: plane, count: p)
        reach.withUnsafeBufferPointer { reach in
            shifts.withUnsafeBufferPointer { shifts in
                let mask = reach.baseAddress!, zero = Vec.V()
                var q = 0
                // Two vectors at a time where the plane allows: two independent chains of
                // multiply-adds instead of one waiting on itself. (SIMD `addingProduct` is
                // taken apart lane by lane, so no fused form.)
                while q + 32 <= p {
                    var a0 = Vec.V(repeating: bias), a1 = a0
                    for t in 0..<taps {
                        let wt = Vec.V(repeating: weights[t]), src = mid + shifts[t] + q, m = mask + t * p + q
                        a0 += wt * Vec.load(src).replacing(with: zero, where: Self.missing(m))
                        a1 += wt * Vec.load(src + 16).replacing(with: zero, where: Self.missing(m + 16))
                    }
                    Vec.store(a0, out + q)
                    Vec.store(a1, out + q + 16)
                    q += 32
                }
                while q + 16 <= p {
                    var acc = Vec.V(repeating: bias)
                    for t in 0..<taps {
                        let v = Vec.load(mid + shifts[t] + q).replacing(with: zero, where: Self.missing(mask + t * p + q))
                        acc += Vec.V(repeating: weights[t]) * v
                    }
                    Vec.store(acc, out + q)
                    q += 16
                }
                while q < p {
                    var acc = bias
                    for t in 0..<taps where mask[t * p + q] != 0 { acc += weights[t] * mid[shifts[t] + q] }
                    out[q] = acc
                    q += 1
                }
            }
        }
    }

    /// Input gradient (added into `dplane` when given) and weight gradient (added into
    /// `dweights`) of `forward`, from the output gradient `dout`.
    func backward(plane: UnsafePointer<Float>, dout: UnsafePointer<Float>, weights: UnsafePointer<Float>, dplane: UnsafeMutablePointer<Float>?,
                  dweights: UnsafeMutablePointer<Float>?, scratch: UnsafeMutablePointer<Float>) {
        let mid = scratch + margin, dmid = scratch + scratchCount + margin
        mid.update(from: plane, count: p)
        if dplane != nil { dmid.update(repeating: 0, count: p) }
        reach.withUnsafeBufferPointer { reach in
            for t in 0..<taps {
                let src = mid + shifts[t], dst = dmid + shifts[t], wt = weights[t], mask = reach.baseAddress! + t * p
                let vw = Vec.V(repeating: wt), zero = Vec.V()
                var acc = Vec.V()
                var q = 0
                while q + 16 <= p {
                    let missing = Self.missing(mask + q)
                    let g = Vec.load(dout + q).replacing(with: zero, where: missing)
                    acc += g * Vec.load(src + q)
                    if dplane != nil { Vec.store(Vec.load(dst + q) + vw * g, dst + q) }
                    q += 16
                }
                var tail: Float = 0
                while q < p {
                    if mask[q] != 0 {
                        tail += dout[q] * src[q]
                        if dplane != nil { dst[q] += wt * dout[q] }
                    }
                    q += 1
                }
                dweights?[t] += acc.sum() + tail
            }
        }
        // Margins gathered what fell off the image (always zero); the middle is the gradient.
        if let dplane { Vec.add(dplane, dmid, p) }
    }

    /// Lanes of 16 positions a tap does not reach.
    @inline(__always)
    private static func missing(_ mask: UnsafePointer<Float>) -> SIMDMask<SIMD16<Int32>> {
        Vec.load(mask) .== Vec.V()
    }
}
