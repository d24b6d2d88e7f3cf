import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

/// K-FAC factors of a tiny convolution against a direct computation: A from patches cut out of the
/// input by hand, G from outer products of the output gradient, both averaged as documented.
@Suite struct KFACTests {
    typealias B = GraphBuilder

    @Test func factorsMatchADirectComputation() throws {
        var r = SplitMix(seed: 17)
        func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float(r.nextUnit() * 2 - 1) } }
        let (n, c, h, w, m) = (3, 2, 4, 4, 3)
        let nodes = [B.node("Conv", ["x", "w"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["a"], ["r"]),
                     B.node("GlobalAveragePool", ["r"], ["g"]), B.node("Flatten", ["g"], ["f"]), B.node("Gemm", ["f", "fc"], ["y"], int: ["transB": 1])]
        let model = B.model(nodes, inputs: [B.value("x", [1, c, h, w])], outputs: ["y"],
                            initializers: [Tensor(name: "w", floats: rand(m * c * 9), dims: [m, c, 3, 3]), Tensor(name: "fc", floats: rand(4 * m), dims: [4, m])])
        let data = Dataset(images: rand(n * c * h * w), labels: [0, 3, 1], sampleShape: [c, h, w], classes: 4)
        let result = try Calibration.gather(model: model, data: data, batches: 1, batch: n, kfac: true)
        let f = try #require(result.kfac["w"])
        #expect(f.k == c * 9 && f.m == m)

        // Direct A: every 3×3 patch (zero padded) of every sample, as a vector, outer product, averaged.
        let k = c * 9
        var a = [Double](repeating: 0, count: k * k)
        // Sample order in the engine's batch follows its seeded shuffle: A and G are sums over
        // all samples, so order does not matter.
        for s in 0..<n {
            for oy in 0..<h {
                for ox in 0..<w {
                    var patch = [Double](repeating: 0, count: k)
                    for ch in 0..<c { for i in 0..<3 { for j in 0..<3 {
                        let iy = oy + i - 1, ix = ox + j - 1
                        if iy >= 0 && iy < h && ix >= 0 && ix < w { patch[(ch * 3 + i) * 3 + j] = Double(data.images[((s * c + ch) * h + iy) * w + ix]) }
                    } } }
                    for p in 0..<k { for q in 0..<k { a[p * k + q] += patch[p] * patch[q] } }
                }
            }
        }
        a = a.map { $0 / Double(n * h * w) }
        for i in 0..<(k * k) { #expect(abs(a[i] - f.a[i]) <= 1e-5 * max(1, abs(a[i]))) }
        // The mean patch, likewise.
        var mean = [Double](repeating: 0, count: k)
        for s in 0..<n { for oy in 0..<h { for ox in 0..<w { for ch in 0..<c { for i in 0..<3 { for j in 0..<3 {
            let iy = oy + i - 1, ix = ox + j - 1
            if iy >= 0 && iy < h && ix >= 0 && ix < w { mean[(ch * 3 + i) * 3 + j] += Double(data.images[((s * c + ch) * h + iy) * w + ix]) / Double(n * h * w) }
        } } } } } }
        #expect(f.mean.count == k)
        for i in 0..<k { #expect(abs(mean[i] - f.mean[i]) <= 1e-6 * max(1, abs(mean[i])), "mean[\(i)] direct \(mean[i]) engine \(f.mean[i])") }

        // Direct G from the output gradient of one backward pass over the same batch.
        let program = try Program(model: model, batch: n)
        let logits = data.images.withUnsafeBufferPointer { Array(program.forward($0)) }
        var grad = [Float](repeating: 0, count: n * 4)
        _ = logits.withUnsafeBufferPointer { z in grad.withUnsafeMutableBufferPointer { Loss.crossEntropy(logits: z, labels: data.labels[...], classes: 4, options: LossOptions(), teacher: nil, grad: $0) } }
        grad.withUnsafeBufferPointer { program.backward($0) }
        let gy = program.store.grads[program.valueIDs["a"]!]!
        var g = [Double](repeating: 0, count: m * m)
        for s in 0..<n { for pos in 0..<(h * w) { for i in 0..<m { for j in 0..<m {
            g[i * m + j] += Double(gy[(s * m + i) * h * w + pos]) * Double(gy[(s * m + j) * h * w + pos])
        } } } }
        g = g.map { $0 * Double(n * n) / Double(n) }
        for i in 0..<(m * m) { #expect(abs(g[i] - f.g[i]) <= 1e-4 * max(1e-3, abs(g[i])), "G[\(i)] direct \(g[i]) engine \(f.g[i])") }
    }
}
