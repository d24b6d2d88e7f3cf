import Foundation
import Testing
@testable import TopiaryEngine
import TopiaryIR
import TopiaryPruning
import TopiaryTestSupport

/// Feature distillation after pruning: the channel map pruning reports ties each pruned feature
/// map to the unpruned one, the loss's gradient is the derivative of its value, and training with
/// it brings the pruned model's features closer to the teacher's.
@Suite struct FeatureDistillationTests {
    typealias B = GraphBuilder

    /// x → conv a (8) → Relu → conv b (8) → BatchNorm → Relu → global pool → Gemm (4 classes);
    /// Tanh in place of Relu for gradient checks (no kinks for finite differences to straddle).
    func model(activation: String = "Relu") throws -> Model {
        var r = SplitMix(seed: 33)
        func w(_ name: String, _ dims: [Int], scale: Float = 1, offset: Float = 0) -> Tensor {
            Tensor(name: name, floats: (0..<dims.reduce(1, *)).map { _ in Float(r.nextUnit() * 2 - 1) * scale + offset }, dims: dims)
        }
        let nodes = [
            B.node("Conv", ["x", "wa", "ba"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node(activation, ["a"], ["ra"]),
            B.node("Conv", ["ra", "wb"], ["b"], ints: ["pads": [1, 1, 1, 1]]),
            B.node("BatchNormalization", ["b", "g", "beta", "mean", "var"], ["n"]), B.node(activation, ["n"], ["rb"]),
            B.node("GlobalAveragePool", ["rb"], ["p"]), B.node("Flatten", ["p"], ["f"]),
            Node(name: "fc", opType: "Gemm", inputs: ["f", "fc", "fb"], outputs: ["y"], attributes: [Attribute(name: "transB", value: .int(1))]),
        ]
        let m = B.model(nodes, inputs: [B.value("x", [1, 3, 6, 6])], outputs: ["y"],
                        initializers: [w("wa", [8, 3, 3, 3], scale: 0.5), w("ba", [8], scale: 0.2), w("wb", [8, 8, 3, 3], scale: 0.3),
                                       w("g", [8], scale: 0.3, offset: 1), w("beta", [8], scale: 0.3), w("mean", [8], scale: 0.1),
                                       w("var", [8], scale: 0.2, offset: 1), w("fc", [4, 8]), w("fb", [4], scale: 0.1)])
        try Pruner.prepare(m)
        return m
    }

    func data(_ n: Int, seed: UInt64) -> Dataset {
        var r = SplitMix(seed: seed)
        return Dataset(images: (0..<(n * 3 * 36)).map { _ in Float(r.nextUnit()) }, labels: (0..<n).map { Int32($0 % 4) },
                       sampleShape: [3, 6, 6], classes: 4)
    }

    func pruned(activation: String = "Relu") throws -> PruningResult {
        let options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(0.4), strategy: .uniform))
        return try Pruner.prune(try model(activation: activation), options: options, writeMasked: true)
    }

    @Test func keptChannelsMapPrunedFeaturesOntoTheMaskedTwins() throws {
        let result = try pruned()
        let masked = try #require(result.masked)
        #expect(Set(result.keptChannels.keys).isSuperset(of: ["ra", "rb"]))
        let x = data(4, seed: 1).images
        let (p, m) = (try Program(model: result.model, batch: 4, trainable: false), try Program(model: masked, batch: 4, trainable: false))
        _ = x.withUnsafeBufferPointer { p.forward($0) }
        _ = x.withUnsafeBufferPointer { m.forward($0) }
        for name in ["ra", "rb"] {
            let kept = try #require(result.keptChannels[name])
            let (ps, ms) = (p.store.shapes[p.valueIDs[name]!], m.store.shapes[m.valueIDs[name]!])
            #expect(ps[1] == kept.count && ms[1] == 8 && kept.count < 8)
            let plane = 36
            let (pv, mv) = (p.store.values[p.valueIDs[name]!], m.store.values[m.valueIDs[name]!])
            var worst: Float = 0
            for b in 0..<4 {
                for (c, t) in kept.enumerated() {
                    for j in 0..<plane { worst = max(worst, abs(pv[(b * ps[1] + c) * plane + j] - mv[(b * 8 + t) * plane + j])) }
                }
            }
            #expect(worst < 1e-5, "\(name): pruned channel c differs from the masked twin's channel kept[c] by \(worst)")
        }
    }

    /// The loss's gradient, through the student's backward pass, against central differences.
    @Test func gradientMatchesFiniteDifferences() throws {
        let result = try pruned(activation: "Tanh")
        let n = 8
        let x = data(n, seed: 2).images
        let student = try Program(model: result.model, batch: n, trainable: true)
        let teacher = try Program(model: try model(activation: "Tanh"), batch: n, trainable: false)
        let fd = try FeatureDistillation(model: result.model, student: student, teacher: teacher, kept: result.keptChannels, weight: 1.5)
        #expect(fd.matches.map(\.name) == ["ra", "f"])
        _ = x.withUnsafeBufferPointer { teacher.forward($0) }
        func loss() -> Double {
            _ = x.withUnsafeBufferPointer { student.forward($0, training: true) }
            return fd.loss(student: student, teacher: teacher)
        }
        #expect(loss() > 0)
        let zero = [Float](repeating: 0, count: n * 4)
        zero.withUnsafeBufferPointer { student.backward($0, seeds: fd.seeds) }
        var checked = 0
        for (name, id) in student.parameters where ["wa", "wb", "g"].contains(name) {
            let analytic = Array(UnsafeBufferPointer(start: student.store.grads[id]!, count: student.store.count(id)))
            let value = student.store.values[id]
            for i in stride(from: 0, to: analytic.count, by: max(1, analytic.count / 6)) {
                let old = value[i], h: Float = 1e-3
                value[i] = old + h
                let up = loss()
                value[i] = old - h
                let down = loss()
                value[i] = old
                let numeric = (up - down) / Double(2 * h)
                #expect(abs(numeric - Double(analytic[i])) <= 2e-2 * max(abs(numeric), 1e-2), "\(name)[\(i)]: numeric \(numeric), analytic \(analytic[i])")
                checked += 1
            }
        }
        #expect(checked >= 12)
    }

    /// Trained with the feature term, the pruned model's features end closer to the teacher's.
    @Test func trainingPullsFeaturesTowardsTheTeacher() throws {
        let train = data(256, seed: 3), probe = data(64, seed: 4)
        func relativeError(featureWeight: Float) throws -> Double {
            let result = try pruned()
            var o = TrainingOptions()
            o.epochs = 4
            o.batch = 32
            o.schedule = Schedule(kind: .constant, lr: 0.05)
            o.loss = LossOptions(distillWeight: 0.5, featureWeight: featureWeight)
            let trainer = try Trainer(model: result.model, options: o, teacher: try model(), teacherChannels: result.keptChannels)
            #expect(trainer.distilledFeatures == (featureWeight > 0 ? ["ra", "f"] : []))
            _ = try trainer.fit(train: train, validation: nil)
            trainer.writeBack(into: result.model)
            let student = try Program(model: result.model, batch: 64, trainable: true)
            let teacher = try Program(model: try model(), batch: 64, trainable: false)
            let fd = try FeatureDistillation(model: result.model, student: student, teacher: teacher, kept: result.keptChannels, weight: 1)
            _ = probe.images.withUnsafeBufferPointer { student.forward($0, training: false) }
            _ = probe.images.withUnsafeBufferPointer { teacher.forward($0, training: false) }
            return fd.loss(student: student, teacher: teacher)
        }
        let (without, with) = (try relativeError(featureWeight: 0), try relativeError(featureWeight: 3))
        #expect(with < 0.7 * without, "relative feature error \(with) with feature distillation against \(without) without")
        // Without a teacher, or with no map in common, a clear error.
        var o = TrainingOptions()
        o.loss.featureWeight = 1
        #expect(throws: EngineError.self) { _ = try Trainer(model: try model(), options: o) }
        let other = B.model([B.node("Relu", ["x"], ["y"])], inputs: [B.value("x", [1, 4])], outputs: ["y"])
        #expect(throws: EngineError.self) { _ = try Trainer(model: other, options: o, teacher: other) }
    }
}
