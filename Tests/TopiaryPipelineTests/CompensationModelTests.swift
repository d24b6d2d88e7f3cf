import Foundation
import Testing
import TopiaryEngine
import TopiaryIR
import TopiaryPipeline
import TopiaryPruning
import TopiaryTestSupport

/// Compensation and reconstruction on a whole model: the same channels removed with and without
/// the refit, from statistics gathered by the engine. The refit brings the pruned model's outputs
/// closer to the unpruned model's on the calibration data, and the masked model (refitted the
/// same way) computes what the pruned one computes.
@Suite struct CompensationModelTests {
    typealias B = GraphBuilder

    /// x → conv a (8, 3×3, bias) → Relu → conv b (8, 3×3) → BatchNorm → Relu → global pool →
    /// Gemm (4 classes, bias; weight [4, 8] with transB, or [8, 4]). Conv b's constant goes to the
    /// BatchNormalization's mean, the Gemm's to its bias.
    func model(transB: Bool = true) throws -> Model {
        var r = SplitMix(seed: 21)
        func w(_ name: String, _ dims: [Int], scale: Float = 1, offset: Float = 0) -> Tensor {
            Tensor(name: name, floats: (0..<dims.reduce(1, *)).map { _ in Float(r.nextUnit() * 2 - 1) * scale + offset }, dims: dims)
        }
        let nodes = [
            B.node("Conv", ["x", "wa", "ba"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["a"], ["ra"]),
            B.node("Conv", ["ra", "wb"], ["b"], ints: ["pads": [1, 1, 1, 1]]),
            B.node("BatchNormalization", ["b", "g", "beta", "mean", "var"], ["n"]), B.node("Relu", ["n"], ["rb"]),
            B.node("GlobalAveragePool", ["rb"], ["p"]), B.node("Flatten", ["p"], ["f"]),
            Node(name: "fc", opType: "Gemm", inputs: ["f", "fc", "fb"], outputs: ["y"], attributes: [Attribute(name: "transB", value: .int(transB ? 1 : 0))]),
        ]
        let m = B.model(nodes, inputs: [B.value("x", [1, 3, 6, 6])], outputs: ["y"],
                        initializers: [w("wa", [8, 3, 3, 3], scale: 0.5), w("ba", [8], scale: 0.2), w("wb", [8, 8, 3, 3], scale: 0.3),
                                       w("g", [8], scale: 0.3, offset: 1), w("beta", [8], scale: 0.3), w("mean", [8], scale: 0.1),
                                       w("var", [8], scale: 0.2, offset: 1), w("fc", transB ? [4, 8] : [8, 4]), w("fb", [4], scale: 0.1)])
        try Pruner.prepare(m)
        return m
    }

    func outputs(_ m: Model, _ x: [Float], batch: Int) throws -> [Float] {
        let p = try Program(model: m, batch: batch, trainable: false)
        return x.withUnsafeBufferPointer { Array(p.forward($0)) }
    }

    /// 64 uniform random samples of the model's input.
    func data() -> Dataset {
        var r = SplitMix(seed: 5)
        let n = 64
        return Dataset(images: (0..<(n * 3 * 36)).map { _ in Float(r.nextUnit()) }, labels: (0..<n).map { Int32($0 % 4) },
                       sampleShape: [3, 6, 6], classes: 4)
    }

    func values(_ m: Model, _ name: String) -> [Float] { m.graph.initializers.first { $0.name == name }?.floatValues() ?? [] }

    /// Squared distance between the outputs of two models on `data`.
    func distance(_ a: Model, _ b: Model, _ data: Dataset) throws -> Double {
        let (u, v) = (try outputs(a, data.images, batch: data.count), try outputs(b, data.images, batch: data.count))
        return zip(u, v).reduce(0.0) { $0 + Double(($1.0 - $1.1) * ($1.0 - $1.1)) }
    }

    @Test func refitBringsOutputsBackAndMaskedEqualsPruned() throws {
        let data = data(), n = data.count
        var options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(0.4), strategy: .uniform))
        options.compensate = true
        let calibration = try #require(try CalibrationData.gather(for: options, model: try model(), data: { data }, batches: 1))
        #expect(calibration.kfac.keys.sorted() == ["fc", "wa", "wb"])
        let want = try outputs(try model(), data.images, batch: n)
        func error(_ m: Model) throws -> Double {
            let got = try outputs(m, data.images, batch: n)
            var sum = 0.0
            for (u, v) in zip(got, want) { sum += Double((u - v) * (u - v)) }
            return sum
        }
        options.compensate = false
        let plain = try Pruner.prune(try model(), options: options)
        options.compensate = true
        let refit = try Pruner.prune(try model(), options: options, calibration: calibration, writeMasked: true)
        #expect(refit.widths.map(\.after) == plain.widths.map(\.after))
        let (before, after) = (try error(plain.model), try error(refit.model))
        #expect(after < 0.5 * before, "error \(after) with the refit against \(before) without")
        // The constants went where they belong: the Gemm's bias and the BatchNormalization's mean.
        #expect(values(refit.model, "fb") != values(plain.model, "fb"))
        #expect(values(refit.model, "mean") != values(plain.model, "mean"))
        #expect(values(refit.model, "ba") == values(plain.model, "ba"))
        // Masked and pruned compute the same.
        let masked = try #require(refit.masked)
        let (m, p) = (try outputs(masked, data.images, batch: n), try outputs(refit.model, data.images, batch: n))
        let scale = m.map { abs($0) }.max() ?? 1
        for (u, v) in zip(m, p) { #expect(abs(u - v) <= 1e-5 * max(scale, 1)) }
        // Without calibration data, a clear error.
        #expect(throws: IRError.self) { _ = try Pruner.prune(try model(), options: options) }
    }

    /// Reconstructing a model that lost nothing against itself changes no weight: every layer's
    /// inputs and targets are its own, so the fit returns its weights, bias and BatchNorm mean
    /// (whichever way the Gemm stores its weight).
    @Test(arguments: [true, false]) func reconstructionOfAnUnprunedModelChangesNothing(transB: Bool) throws {
        let (teacher, student) = (try model(transB: transB), try model(transB: transB))
        let refitted = try Reconstruction.run(pruned: student, teacher: teacher, kept: [:], data: data(), batches: 1)
        #expect(refitted == 2)  // conv b and the Gemm; conv a reads the data input
        for t in teacher.graph.initializers {
            let (u, v) = (t.floatValues() ?? [], values(student, t.name))
            let scale = u.map { abs($0) }.max() ?? 1
            #expect(u.count == v.count && zip(u, v).allSatisfy { abs($0 - $1) <= 1e-4 * max(scale, 1) }, "\(t.name) moved")
        }
    }

    /// Pruned 40 % of the channels, reconstruction brings the outputs closer to the unpruned
    /// model's than compensation does, and layer by layer: a second pass, on inputs that no longer
    /// change, leaves the last layer where the first put it (measuring every layer before refitting
    /// any would have fitted it to inputs the refit of conv b then changed).
    @Test func reconstructionFitsLayerByLayer() throws {
        let data = data()
        var options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(0.4), strategy: .uniform))
        let teacher = try model()
        let plain = try Pruner.prune(try model(), options: options)
        options.compensate = true
        let calibration = try CalibrationData.gather(for: options, model: try model(), data: { data }, batches: 1)
        let compensated = try Pruner.prune(try model(), options: options, calibration: calibration)
        let rebuilt = plain.model
        let before = values(rebuilt, "fc")
        try Reconstruction.run(pruned: rebuilt, teacher: teacher, kept: plain.keptChannels, data: data, batches: 1, damping: 1e-6)
        let (e0, e1, e2) = (try distance(try Pruner.prune(try model(), options: PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: options.allocation)).model, teacher, data),
                            try distance(compensated.model, teacher, data), try distance(rebuilt, teacher, data))
        #expect(e2 < e1 && e1 < e0, "distance to the unpruned outputs: cut \(e0), compensated \(e1), reconstructed \(e2)")
        let first = values(rebuilt, "fc")
        try Reconstruction.run(pruned: rebuilt, teacher: teacher, kept: plain.keptChannels, data: data, batches: 1, damping: 1e-6)
        let second = values(rebuilt, "fc")
        let moved = zip(first, before).map { abs($0 - $1) }.max() ?? 0, again = zip(second, first).map { abs($0 - $1) }.max() ?? 0
        #expect(moved > 1e-2 && again < 0.05 * moved, "first pass moved the Gemm by \(moved), the second by \(again)")
    }
}
