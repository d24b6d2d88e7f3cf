import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

/// The Taylor statistic of a channel, Σ over positions of activation × ∂loss/∂activation, equals
/// the derivative of the loss with respect to scaling that channel's filter (and bias): checked by
/// central differences on a one-sample batch.
@Suite struct CalibrationTests {
    typealias B = GraphBuilder

    @Test func taylorEqualsTheDerivativeOfScalingAChannel() throws {
        var r = SplitMix(seed: 5)
        func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float(r.nextUnit() * 2 - 1) } }
        let w = rand(3 * 2 * 3 * 3), b = rand(3), fc = rand(4 * 3)
        func model(scale c: Int, by s: Float) -> Model {
            var ws = w, bs = b
            for k in 0..<(2 * 9) { ws[c * 18 + k] *= s }
            bs[c] *= s
            let nodes = [B.node("Conv", ["x", "w", "b"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["a"], ["r"]),
                         B.node("GlobalAveragePool", ["r"], ["g"]), B.node("Flatten", ["g"], ["f"]), B.node("Gemm", ["f", "fc"], ["y"], int: ["transB": 1])]
            return B.model(nodes, inputs: [B.value("x", [1, 2, 4, 4])], outputs: ["y"],
                           initializers: [Tensor(name: "w", floats: ws, dims: [3, 2, 3, 3]), Tensor(name: "b", floats: bs, dims: [3]), Tensor(name: "fc", floats: fc, dims: [4, 3])])
        }
        let data = Dataset(images: rand(32), labels: [2], sampleShape: [2, 4, 4], classes: 4)
        let stats = try Calibration.gather(model: model(scale: 0, by: 1), data: data, batches: 1, batch: 1)
        let taylor = try #require(stats.channelTaylor["a"])
        #expect(taylor.count == 3)
        func loss(_ m: Model) throws -> Double { try Evaluator.evaluate(model: m, data: data, batch: 1).loss }
        let h: Float = 1e-3
        for c in 0..<3 {
            let numeric = (try loss(model(scale: c, by: 1 + h)) - loss(model(scale: c, by: 1 - h))) / Double(2 * h)
            #expect(abs(abs(numeric) - taylor[c]) <= 2e-3 * max(1, abs(numeric)), "channel \(c): taylor \(taylor[c]) vs |dL/dα| \(abs(numeric))")
        }
        // Gradient norms exist for every trained weight, one per output filter.
        #expect(stats.filterGradientNorm["w"]?.count == 3)
        #expect(stats.filterGradientNorm["fc"]?.count == 4)
    }
}
