import CKernels

/// One 3×3 stride-1 convolution whose output is as large as its input, over a whole batch, by
/// Winograd's minimal filtering F(R×R, 3×3) (transforms in `CKernels/winograd.c`), R = 4 on maps
/// of 4×4 and more, else 2. The weights become (R+2)² matrices U_ξ (M × C) and every sample's
/// (R+2)×(R+2) input patches as many matrices V_ξ (tiles of the batch × C); the output is the
/// products M_ξ = V_ξ · U_ξᵀ transformed back: per R×R output block and channel pair, 16
/// multiply-adds instead of 36 (R = 2) or 36 instead of 144 (R = 4). Backward runs the adjoints
/// in the same domain, dM from dY, dU_ξ = dM_ξᵀ · V_ξ and dV_ξ = dM_ξ · U_ξ, then dW and dX, so
/// both gradients are those of the convolution itself. Each product runs whole on one core.
final class Winograd {
    let n: Int, c: Int, m: Int, h: Int, w: Int, ph: Int, pw: Int
    /// Output block side R, and the number of transformed matrices (R + 2)².
    let tile: Int, matrices: Int
    /// Output blocks per sample, and over the batch; channels padded to vectors of 16.
    let tiles: Int, total: Int, cp: Int, mp: Int
    /// Floats from one of the matrices to the next in U, V and M.
    private let su: Int, sv: Int, sm: Int
    private let u: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, mo: UnsafeMutablePointer<Float>
    private let du: UnsafeMutablePointer<Float>?
    /// Per block of samples (`Parallel.workers` blocks), one scratch for each transform: the
    /// input copy and the output-gradient copy keep zero borders from call to call.
    private let scratch: UnsafeMutablePointer<Float>, scratchCount: Int, blocks: Int
    private let inCount: Int, outCount: Int
    private enum Region: Int { case input, inputGradient, output, outputGradient }

    /// Whether the products are large enough to gain from the transforms (16 output blocks
    /// over the batch at least).
    static func worthwhile(n: Int, h: Int, w: Int, c: Int, m: Int) -> Bool {
        n * ((h + 1) / 2) * ((w + 1) / 2) >= 16
    }

    /// Whether the forward pass gains over the direct kernel (where that can run): with 16
    /// channels and 64 output blocks of 2×2 or more. Below, the products are too thin (ResNet-18
    /// at batch 1 on 8×8: 1.3 ms against 0.6 direct); above, F(4×4) wins even on the 8×8 model's
    /// 16 and 32 channels (batch-64 inference, 8×8 / 4×4 maps: 1.27 / 1.08 ms direct against
    /// 0.78 / 0.39), and the backward pass gains from the transforms at every size measured.
    static func forwardPays(n: Int, h: Int, w: Int, c: Int, m: Int) -> Bool {
        c >= 16 && m >= 16 && n * ((h + 1) / 2) * ((w + 1) / 2) >= 64
    }

    /// F(4×4, 3×3) on maps of 4×4 and more: 2.25 multiply-adds per output and channel pair
    /// instead of 4, and transformed arrays 2.25 times the activation instead of 4 (ResNet-18 at
    /// 64², batch 64, backward on 16×16 / 8×8 / 4×4 maps: 36 / 21 / 20 ms → 22 / 13 / 16 ms).
    /// Its float error is larger (points ±2: about 3e-6 relative per 64-channel convolution
    /// against 1e-7), still far inside the engine's 1e-4 agreement with onnxruntime. On 2×2
    /// maps one 6×6 patch would cost 36 products for 4 outputs, against 16.
    static func tile(h: Int, w: Int) -> Int { h >= 4 && w >= 4 ? 4 : 2 }

    init(_ store: Store, n: Int, c: Int, m: Int, h: Int, w: Int, ph: Int, pw: Int, weightGradient: Bool) {
        (self.n, self.c, self.m, self.h, self.w, self.ph, self.pw) = (n, c, m, h, w, ph, pw)
        tile = Winograd.tile(h: h, w: w)
        matrices = (tile + 2) * (tile + 2)
        tiles = ((h + tile - 1) / tile) * ((w + tile - 1) / tile)
        total = n * tiles
        (cp, mp) = (topiary_wino_channels(c), topiary_wino_channels(m))
        (su, sv, sm) = (topiary_wino_stride(mp, c), topiary_wino_stride(total, c), topiary_wino_stride(total, m))
        u = store.allocate(matrices * su)
        v = store.allocate(matrices * sv)
        mo = store.allocate(matrices * sm)
        du = weightGradient ? store.allocate(matrices * su) : nil
        (inCount, outCount) = (topiary_wino_scratch_in(tile, h, w, c), topiary_wino_scratch_out(tile, h, w, m))
        scratchCount = 2 * inCount + 2 * outCount
        blocks = max(1, min(Parallel.workers, n))
        scratch = store.allocate(blocks * scratchCount)
    }

    /// The products, one whole product per item.
    private func products(_ body: (Int) -> Void) {
        Parallel.blocks(count: matrices, body)
    }

    /// Samples in fixed blocks over the cores, each block with its own scratch for `region`.
    private func samples(_ region: Region, _ body: (_ sample: Int, _ scratch: UnsafeMutablePointer<Float>) -> Void) {
        let (n, blocks, count) = (n, blocks, scratchCount)
        let offset = [0, inCount, 2 * inCount, 2 * inCount + outCount][region.rawValue]
        Parallel.blocks(of: n, parts: blocks) { b, range in
            for sI in range { body(sI, scratch + b * count + offset) }
        }
    }

    /// Output channels split over the cores.
    private func outputChannels(_ body: (_ lo: Int, _ hi: Int) -> Void) {
        let parts = min(Parallel.workers, m), m = m
        Parallel.blocks(count: parts) { i in body(m * i / parts, m * (i + 1) / parts) }
    }

    /// Store generation at which U was made from weights that are not trained (inference), which
    /// are then transformed once, not every batch.
    private var transformedAt: Int?

    /// U from the weights (once for weights that are not trained: `generation` is then the
    /// store's) and V from the input.
    private func transform(x: UnsafePointer<Float>, w weights: UnsafePointer<Float>, fixedWeightsGeneration generation: Int?) {
        let (tile, c, m, h, w, ph, pw, tiles, total, u, v) = (tile, c, m, h, w, ph, pw, tiles, total, u, v)
        if generation == nil || generation != transformedAt {
            outputChannels { lo, hi in topiary_wino_weights(tile, weights, m, c, lo, hi, u) }
            transformedAt = generation
        }
        samples(.input) { sI, scratch in topiary_wino_input(tile, x + sI * c * h * w, c, h, w, ph, pw, v, total, sI * tiles, scratch) }
    }

    func forward(x: UnsafePointer<Float>, w weights: UnsafePointer<Float>, bias: UnsafePointer<Float>?, y: UnsafeMutablePointer<Float>,
                 fixedWeightsGeneration generation: Int?) {
        let (tile, m, h, w, tiles, total, cp, mp, su, sv, sm) = (tile, m, h, w, tiles, total, cp, mp, su, sv, sm)
        let (u, v, mo) = (u, v, mo)
        transform(x: x, w: weights, fixedWeightsGeneration: generation)
        products { xi in
            gemm(transB: true, m: total, n: mp, k: cp, a: v + xi * sv, lda: cp, b: u + xi * su, ldb: cp, beta: 0, c: mo + xi * sm, ldc: mp)
        }
        samples(.output) { sI, scratch in topiary_wino_output(tile, mo, m, h, w, total, sI * tiles, bias, y + sI * m * h * w, scratch) }
    }

    /// Adds the input and weight gradients (where asked) from the output's; the forward's
    /// transformed input is overwritten. `transformed`: whether the forward ran here (else the
    /// weights and input are transformed first).
    func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>, w weights: UnsafePointer<Float>, transformed: Bool,
                  dx: UnsafeMutablePointer<Float>?, dw: UnsafeMutablePointer<Float>?) {
        if !transformed { transform(x: x, w: weights, fixedWeightsGeneration: nil) }
        let (tile, c, m, h, w, ph, pw, tiles, total, cp, mp, su, sv, sm) = (tile, c, m, h, w, ph, pw, tiles, total, cp, mp, su, sv, sm)
        let (u, v, mo) = (u, v, mo)
        let du = dw == nil ? nil : du
        samples(.outputGradient) { sI, scratch in topiary_wino_output_grad(tile, dy + sI * m * h * w, m, h, w, total, sI * tiles, mo, scratch) }
        let inputGradient = dx != nil
        products { xi in
            let vx = v + xi * sv, mx = mo + xi * sm, ux = u + xi * su
            if let du { gemm(transA: true, m: mp, n: cp, k: total, a: mx, lda: mp, b: vx, ldb: cp, beta: 0, c: du + xi * su, ldc: cp) }
            // V_ξ is no longer needed once dU_ξ is made: dV_ξ takes its place.
            if inputGradient { gemm(m: total, n: cp, k: mp, a: mx, lda: mp, b: ux, ldb: cp, beta: 0, c: vx, ldc: cp) }
        }
        if let du, let dw { outputChannels { lo, hi in topiary_wino_weights_grad(tile, du, m, c, lo, hi, dw) } }
        if let dx { samples(.inputGradient) { sI, scratch in topiary_wino_input_grad(tile, v, c, h, w, ph, pw, total, sI * tiles, dx + sI * c * h * w, scratch) } }
    }
}
