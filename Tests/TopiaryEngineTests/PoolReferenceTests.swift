import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

/// Max pooling's output and input gradient against a direct reference (window by window, the
/// first maximum in row-major order takes the gradient), over pads, strides, dilations and
/// ceil_mode.
@Suite struct PoolReferenceTests {
    struct Geometry: CustomTestStringConvertible, Sendable {
        let name: String
        let input: [Int]  // N, C, H, W
        let kernel: [Int]
        var pads = [0, 0, 0, 0]
        var strides = [1, 1]
        var dilations = [1, 1]
        var ceil = false
        var testDescription: String { name }
    }

    static let geometries: [Geometry] = [
        Geometry(name: "3×3 stride 2 pads 1 (ResNet stem)", input: [2, 3, 8, 7], kernel: [3, 3], pads: [1, 1, 1, 1], strides: [2, 2]),
        Geometry(name: "2×2 stride 2, one-sided pads", input: [1, 2, 5, 5], kernel: [2, 2], pads: [0, 0, 1, 1], strides: [2, 2]),
        Geometry(name: "3×2 dilated, pads 2", input: [2, 2, 7, 6], kernel: [3, 2], pads: [2, 1, 2, 1], dilations: [2, 3]),
        Geometry(name: "3×3 stride 2, ceil_mode", input: [1, 2, 6, 6], kernel: [3, 3], strides: [2, 2], ceil: true),
    ]

    @Test(arguments: geometries)
    func matchesReference(_ g: Geometry) throws {
        let (n, c, h, w) = (g.input[0], g.input[1], g.input[2], g.input[3])
        var node = GraphBuilder.node("MaxPool", ["x"], ["y"], ints: ["kernel_shape": g.kernel, "pads": g.pads, "strides": g.strides, "dilations": g.dilations])
        node.setAttribute("ceil_mode", .int(g.ceil ? 1 : 0))
        let model = GraphBuilder.model([node], inputs: [GraphBuilder.value("x", g.input)], outputs: ["y"])
        let program = try Program(model: model, batch: n, inputGradient: true)
        let (ho, wo) = (program.outputShape[2], program.outputShape[3])
        // Values in steps of 1/8 over a small range: ties occur, and the first one must win.
        var x = GradientTests.rand(n * c * h * w, seed: 3).map { ($0 * 4).rounded() / 8 }
        let r = GradientTests.rand(n * c * ho * wo, seed: 4)
        let y = Array(x.withUnsafeBufferPointer { program.forward($0, training: true) })
        r.withUnsafeBufferPointer { program.backward($0) }
        let dx = Array(UnsafeBufferPointer(start: program.store.grads[program.inputID]!, count: x.count))
        var ry = [Float](), rdx = [Float](repeating: 0, count: x.count)
        for plane in 0..<(n * c) {
            for oy in 0..<ho {
                for ox in 0..<wo {
                    var best = -Float.greatestFiniteMagnitude, at = -1
                    for i in 0..<g.kernel[0] {
                        for j in 0..<g.kernel[1] {
                            let iy = oy * g.strides[0] - g.pads[0] + i * g.dilations[0], ix = ox * g.strides[1] - g.pads[1] + j * g.dilations[1]
                            guard iy >= 0, iy < h, ix >= 0, ix < w else { continue }
                            let k = plane * h * w + iy * w + ix
                            if x[k] > best { (best, at) = (x[k], k) }
                        }
                    }
                    ry.append(best)
                    if at >= 0 { rdx[at] += r[(plane * ho + oy) * wo + ox] }
                }
            }
        }
        #expect(y == ry, "\(g.name): output")
        #expect(dx == rdx, "\(g.name): input gradient")
    }
}
