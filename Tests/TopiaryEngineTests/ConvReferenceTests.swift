import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

/// The convolution kernel's forward output, input gradient and weight gradient against a direct
/// six-loop reference in double precision, on every element, for each of the kernel's code paths
/// (batched columns for small images, per-sample products for large ones, the shifted-copy
/// gather of stride-1 "same" convolutions, the direct kernel, Winograd's transforms, few-column products, pointwise,
/// strided and dilated, grouped).
@Suite struct ConvReferenceTests {
    struct Geometry: CustomTestStringConvertible, Sendable {
        let name: String
        let input: [Int]  // N, C, H, W
        let weight: [Int]  // M, C/group, kh, kw
        var pads = [0, 0, 0, 0]  // top, left, bottom, right
        var strides = [1, 1]
        var dilations = [1, 1]
        var group = 1
        var bias = false
        var testDescription: String { name }
    }

    static let geometries: [Geometry] = [
        Geometry(name: "3×3 same, batched small images", input: [3, 2, 5, 6], weight: [4, 2, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "3×3 same, small image, large weights (batched products)", input: [2, 64, 4, 4], weight: [128, 64, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "2×2 same, asymmetric pads", input: [2, 3, 4, 5], weight: [2, 3, 2, 2], pads: [1, 0, 0, 1]),
        Geometry(name: "5×5 same on a 3×3 image", input: [2, 2, 3, 3], weight: [3, 2, 5, 5], pads: [2, 2, 2, 2]),
        Geometry(name: "3×3 same, one sample", input: [1, 2, 4, 4], weight: [3, 2, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "3×3 same, large image per sample", input: [2, 2, 17, 16], weight: [3, 2, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "pointwise", input: [2, 3, 4, 4], weight: [5, 3, 1, 1]),
        Geometry(name: "stride 2, dilation 2", input: [2, 2, 7, 8], weight: [3, 2, 3, 3], pads: [2, 1, 1, 2], strides: [2, 2], dilations: [2, 1]),
        Geometry(name: "grouped same", input: [2, 4, 5, 5], weight: [6, 2, 3, 3], pads: [1, 1, 1, 1], group: 2),
        Geometry(name: "3×3 same, odd image, top-left pads only, bias (F(4×4), cropped blocks)", input: [3, 5, 7, 9], weight: [6, 5, 3, 3], pads: [0, 2, 2, 0], bias: true),
        Geometry(name: "3×3 same, 64 channels, 64 blocks (Winograd forward too)", input: [16, 64, 4, 4], weight: [64, 64, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "3×3 same, 9×10, one-sided pads, bias (F(4×4), cropped blocks)", input: [3, 5, 9, 10], weight: [6, 5, 3, 3], pads: [1, 0, 1, 2], bias: true),
        Geometry(name: "3×3 same, 64 channels on 8×8 (F(4×4) forward too)", input: [4, 64, 8, 8], weight: [64, 64, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "3×3 same, 3×3 image, one-sided pads, bias (F(2×2), cropped blocks)", input: [9, 5, 3, 3], weight: [4, 5, 3, 3], pads: [0, 1, 2, 1], bias: true),
        Geometry(name: "3×3 same, 2×2 image (one Winograd block per sample)", input: [17, 6, 2, 2], weight: [5, 6, 3, 3], pads: [1, 1, 1, 1]),
        Geometry(name: "3×3 same, one sample on 2×2, bias (few columns)", input: [1, 21, 2, 2], weight: [5, 21, 3, 3], pads: [1, 1, 1, 1], bias: true),
        Geometry(name: "stride 2, grouped, one sample on 3×2 out (few columns)", input: [1, 4, 5, 4], weight: [6, 2, 3, 3], pads: [1, 1, 1, 1], strides: [2, 2], group: 2),
        Geometry(name: "5×5 same, 8×8 (direct kernel)", input: [2, 3, 8, 8], weight: [4, 3, 5, 5], pads: [2, 2, 2, 2]),
        Geometry(name: "depthwise 3×3 same, 4×4 (one vector)", input: [3, 5, 4, 4], weight: [5, 1, 3, 3], pads: [1, 1, 1, 1], group: 5),
        Geometry(name: "depthwise 3×3 same, 9×7 (vectors and a tail)", input: [2, 3, 9, 7], weight: [3, 1, 3, 3], pads: [1, 1, 1, 1], group: 3),
        Geometry(name: "depthwise 5×5 same, asymmetric pads", input: [2, 2, 6, 5], weight: [2, 1, 5, 5], pads: [1, 2, 3, 2], group: 2),
        Geometry(name: "depthwise stride 2, same pads (subsampled)", input: [2, 4, 8, 8], weight: [4, 1, 3, 3], pads: [1, 1, 1, 1], strides: [2, 2], group: 4),
        Geometry(name: "depthwise 5×5 stride 2, odd image (subsampled)", input: [2, 3, 7, 9], weight: [3, 1, 5, 5], pads: [2, 2, 2, 2], strides: [2, 2], group: 3),
        Geometry(name: "depthwise stride 2, no pads (row by row)", input: [2, 3, 9, 9], weight: [3, 1, 3, 3], strides: [2, 2], group: 3),
    ]

    /// Each geometry with the direct C kernels allowed (where this build has them) and not.
    @Test(arguments: geometries, [true, false])
    func matchesDirectConvolution(_ g: Geometry, direct: Bool) throws {
        let (n, c, h, w) = (g.input[0], g.input[1], g.input[2], g.input[3])
        let (m, cg, kh, kw) = (g.weight[0], g.weight[1], g.weight[2], g.weight[3])
        let ho = (h + g.pads[0] + g.pads[2] - g.dilations[0] * (kh - 1) - 1) / g.strides[0] + 1
        let wo = (w + g.pads[1] + g.pads[3] - g.dilations[1] * (kw - 1) - 1) / g.strides[1] + 1
        let weights = GradientTests.rand(g.weight.reduce(1, *), seed: 5)
        let biases = g.bias ? GradientTests.rand(m, seed: 8) : []
        var node = GraphBuilder.node("Conv", g.bias ? ["x", "w", "b"] : ["x", "w"], ["y"], ints: ["pads": g.pads, "strides": g.strides, "dilations": g.dilations])
        node.setAttribute("group", .int(Int64(g.group)))
        let model = GraphBuilder.model([node], inputs: [GraphBuilder.value("x", g.input)], outputs: ["y"],
                                       initializers: [Tensor(name: "w", floats: weights, dims: g.weight)] + (g.bias ? [Tensor(name: "b", floats: biases, dims: [m])] : []))
        let program = try Program(model: model, batch: n, inputGradient: true, direct: direct)
        #expect(program.outputShape == [n, m, ho, wo])
        // Stride-1 "same" 3×3 convolutions take Winograd's transforms whenever allowed and the
        // products are large enough; other small stride-1 "same" ones the direct kernel where
        // this build has it.
        let sameSize = ho == h && wo == w && g.strides == [1, 1] && g.dilations == [1, 1]
        // (forward too where it pays or the direct kernel cannot run).
        let expectWinograd = direct && sameSize && g.group == 1 && kh == 3 && kw == 3 && Winograd.worthwhile(n: n, h: h, w: w, c: c, m: m)
        let directFits = direct && ConvKernel.directAvailable && sameSize && g.group == 1 && (16...256).contains(ho * wo)
        let expectWinogradForward = expectWinograd && (!directFits || Winograd.forwardPays(n: n, h: h, w: w, c: c, m: m))
        let kernel = try #require(program.kernels.compactMap { $0 as? ConvKernel }.first)
        #expect(kernel.usesWinograd == expectWinograd, "\(g.name)")
        #expect(kernel.winogradForward == expectWinogradForward, "\(g.name)")
        #expect(kernel.direct == (directFits && !expectWinogradForward), "\(g.name)")
        let depthwise = g.group == c && g.group == m && cg == 1
        #expect(kernel.skinny == (n == 1 && ho * wo <= 8 && !depthwise), "\(g.name)")
        let x = GradientTests.rand(n * c * h * w, seed: 6)
        let r = GradientTests.rand(n * m * ho * wo, seed: 7)
        let y = Array(x.withUnsafeBufferPointer { program.forward($0, training: true) })
        r.withUnsafeBufferPointer { program.backward($0) }
        let dx = Array(UnsafeBufferPointer(start: program.store.grads[program.inputID]!, count: x.count))
        let dw = Array(UnsafeBufferPointer(start: program.parameter(0).grad, count: weights.count))
        // A training program without the data input's gradient skips it and finds the same dW.
        let plain = try Program(model: model, batch: n, direct: direct)
        _ = x.withUnsafeBufferPointer { plain.forward($0, training: true) }
        r.withUnsafeBufferPointer { plain.backward($0) }
        #expect(plain.store.grads[plain.inputID] == nil)
        #expect(Array(UnsafeBufferPointer(start: plain.parameter(0).grad, count: weights.count)) == dw, "\(g.name)")

        let db = g.bias ? Array(UnsafeBufferPointer(start: program.parameter(1).grad, count: m)) : []
        var ry = (0..<r.count).map { g.bias ? Double(biases[$0 / (ho * wo) % m]) : 0 }, rdb = [Double](repeating: 0, count: g.bias ? m : 0), rdx = [Double](repeating: 0, count: x.count), rdw = [Double](repeating: 0, count: weights.count)
        let mg = m / g.group
        for s in 0..<n {
            for oc in 0..<m {
                let grp = oc / mg
                for oy in 0..<ho {
                    for ox in 0..<wo {
                        let yi = ((s * m + oc) * ho + oy) * wo + ox
                        if g.bias { rdb[oc] += Double(r[yi]) }
                        for ci in 0..<cg {
                            for i in 0..<kh {
                                for j in 0..<kw {
                                    let iy = oy * g.strides[0] - g.pads[0] + i * g.dilations[0], ix = ox * g.strides[1] - g.pads[1] + j * g.dilations[1]
                                    guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                                    let xi = ((s * c + grp * cg + ci) * h + iy) * w + ix, wi = ((oc * cg + ci) * kh + i) * kw + j
                                    ry[yi] += Double(x[xi]) * Double(weights[wi])
                                    rdx[xi] += Double(r[yi]) * Double(weights[wi])
                                    rdw[wi] += Double(r[yi]) * Double(x[xi])
                                }
                            }
                        }
                    }
                }
            }
        }
        // F(4×4, 3×3) rounds more (its points ±2 scale terms by up to 8 and 1/24): on 64 channels
        // of unit-normal data, up to 7e-5 per element against 1e-5 for the other paths; a wrong
        // coefficient or term shows as errors of order 1.
        let tolerance = kernel.usesWinograd && Winograd.tile(h: h, w: w) == 4 ? 2.5e-4 : 1e-4
        func close(_ a: [Float], _ b: [Double], _ what: String) {
            #expect(a.count == b.count)
            let worst = zip(a, b).map { abs(Double($0) - $1) / max(1, abs($1)) }.max() ?? 0
            #expect(worst < tolerance, "\(g.name): \(what) differs by \(worst)")
        }
        close(y, ry, "output")
        close(dx, rdx, "input gradient")
        close(dw, rdw, "weight gradient")
        close(db, rdb, "bias gradient")
    }

    /// An inference program transforms its fixed weights once for the Winograd forward, and again
    /// after new weights are loaded: doubling them doubles the output.
    @Test func inferenceRetransformsLoadedWeights() throws {
        let weights = GradientTests.rand(64 * 64 * 9, seed: 11)
        let node = GraphBuilder.node("Conv", ["x", "w"], ["y"], ints: ["pads": [1, 1, 1, 1]])
        let model = GraphBuilder.model([node], inputs: [GraphBuilder.value("x", [16, 64, 4, 4])], outputs: ["y"],
                                       initializers: [Tensor(name: "w", floats: weights, dims: [64, 64, 3, 3])])
        let program = try Program(model: model, batch: 16, trainable: false)
        #expect(program.kernels.compactMap { $0 as? ConvKernel }.first?.winogradForward == true)
        let x = GradientTests.rand(16 * 64 * 16, seed: 12)
        let y1 = Array(x.withUnsafeBufferPointer { program.forward($0) })
        #expect(Array(x.withUnsafeBufferPointer { program.forward($0) }) == y1)
        program.load(weights: ["w": weights.map { $0 * 2 }])
        let y2 = Array(x.withUnsafeBufferPointer { program.forward($0) })
        let worst = zip(y1, y2).map { abs($1 - 2 * $0) / max(1, abs($1)) }.max() ?? 1
        #expect(worst < 1e-5, "after load: \(worst)")
    }
}
