import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

@Suite struct RecalibrationTests {
    typealias B = GraphBuilder

    /// After recalibration the running mean is the average of the batch means, and the running
    /// variance the average of the (unbiased) batch variances, of the BatchNorm's input.
    @Test func runningStatisticsAreBatchAverages() throws {
        var r = SplitMix(seed: 11)
        func rand(_ n: Int) -> [Float] { (0..<n).map { _ in Float(r.nextUnit() * 4 - 1) } }
        let nodes = [B.node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])]
        let model = B.model(nodes, inputs: [B.value("x", [3, 2, 2, 2])], outputs: ["y"],
                            initializers: [Tensor(name: "g", floats: [1, 1], dims: [2]), Tensor(name: "b", floats: [0, 0], dims: [2]),
                                           Tensor(name: "m", floats: [9, 9], dims: [2]), Tensor(name: "v", floats: [9, 9], dims: [2])])
        let program = try Program(model: model, batch: 3)
        let batches = [rand(24), rand(24)]
        program.recalibrateBatchNorm(batches)
        let w = program.weights()
        for ch in 0..<2 {
            var means: [Double] = [], vars: [Double] = []
            for x in batches {
                let v = (0..<3).flatMap { s in (0..<4).map { Double(x[(s * 2 + ch) * 4 + $0]) } }
                let mu = v.reduce(0, +) / 12
                means.append(mu)
                vars.append(v.reduce(0) { $0 + ($1 - mu) * ($1 - mu) } / 11)
            }
            #expect(abs(Double(w["m"]![ch]) - (means[0] + means[1]) / 2) < 1e-5)
            #expect(abs(Double(w["v"]![ch]) - (vars[0] + vars[1]) / 2) < 1e-4)
        }
    }
}
