import Foundation
import Testing
import TopiaryEngine
import TopiaryIR
import TopiaryPruning
import TopiaryTestSupport

/// Gradual pruning's parts: a later round keeps what earlier rounds masked, removing the masked
/// channels computes what the masked model computes, and training holds them at zero.
@Suite struct GradualPruningTests {
    typealias B = GraphBuilder

    /// x → conv a (8, 3×3, bias) → BatchNorm → Relu → conv b (6, 3×3) → global pool → Gemm
    /// (4 classes). Weights from a seeded generator. (No Relu after b: a masked channel of b
    /// still gets gradients, so holding it at zero is the trainer's doing.)
    func model(seed: UInt64 = 3) throws -> Model {
        var r = SplitMix(seed: seed)
        func w(_ name: String, _ dims: [Int], scale: Float = 1, offset: Float = 0) -> Tensor {
            Tensor(name: name, floats: (0..<dims.reduce(1, *)).map { _ in Float(r.nextUnit() * 2 - 1) * scale + offset }, dims: dims)
        }
        let nodes = [
            B.node("Conv", ["x", "wa", "ba"], ["a"], ints: ["pads": [1, 1, 1, 1]]),
            B.node("BatchNormalization", ["a", "g", "beta", "mean", "var"], ["n"]), B.node("Relu", ["n"], ["ra"]),
            B.node("Conv", ["ra", "wb"], ["b"], ints: ["pads": [1, 1, 1, 1]]), B.node("GlobalAveragePool", ["b"], ["p"]), B.node("Flatten", ["p"], ["f"]),
            Node(name: "fc", opType: "Gemm", inputs: ["f", "fc", "fb"], outputs: ["y"], attributes: [Attribute(name: "transB", value: .int(1))]),
        ]
        let m = B.model(nodes, inputs: [B.value("x", [1, 3, 6, 6])], outputs: ["y"],
                        initializers: [w("wa", [8, 3, 3, 3]), w("ba", [8], scale: 0.1), w("g", [8], scale: 0.5, offset: 1), w("beta", [8], scale: 0.2),
                                       w("mean", [8], scale: 0.1), w("var", [8], scale: 0.2, offset: 1), w("wb", [6, 8, 3, 3], scale: 0.3),
                                       w("fc", [4, 6]), w("fb", [4], scale: 0.1)])
        try Pruner.prepare(m)
        return m
    }

    func outputs(_ m: Model, _ x: [Float]) throws -> [Float] {
        let p = try Program(model: m, batch: 2, trainable: false)
        return x.withUnsafeBufferPointer { Array(p.forward($0)) }
    }

    func random(_ n: Int, seed: UInt64) -> [Float] {
        var r = SplitMix(seed: seed)
        return (0..<n).map { _ in Float(r.nextUnit() * 2 - 1) }
    }

    /// Round two ranks by a criterion that disagrees with round one's; the pins still carry every
    /// channel round one masked (without them it drops some). The channels masked are then
    /// removed exactly: the pruned model computes the masked model's outputs.
    @Test func laterRoundsKeepEarlierMasksAndRemovalMatchesTheMask() throws {
        var options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(0.25), strategy: .global))
        let first = try Pruner.mask(try model(), options: options)
        #expect(first.filters.values.reduce(0) { $0 + $1.count } >= 3)

        options.criterion = try Criteria.parse("random", seed: 5)
        options.allocation.target = .ratio(0.5)
        func covers(_ later: [String: [Int]]) -> Bool { first.filters.allSatisfy { Set(later[$0.key] ?? []).isSuperset(of: $0.value) } }
        #expect(!covers(try Pruner.mask(try model(), options: options).filters), "the random ranking already agrees with round one: the test shows nothing")
        options.pinned = first.filters
        let masked = try model()
        let second = try Pruner.mask(masked, options: options)
        #expect(covers(second.filters))
        // Scale and shift of the BatchNormalization are held too, not only the filters.
        #expect(second.zeroed.contains { $0.tensor == "g" } && second.zeroed.contains { $0.tensor == "beta" })

        let pruned = try Pruner.copy(masked)
        // Options that alone would choose other channels: `exactly` overrides them.
        let other = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(0.1), strategy: .global))
        let result = try Pruner.prune(pruned, options: other, exactly: second.filters)
        let a = try #require(result.widths.first { $0.producers.contains("a (Conv)") })
        #expect(a.after == 8 - (second.filters["wa"]?.count ?? 0))
        #expect(abs(Double(result.after.flops) / Double(result.before.flops) - second.flopsKept) < 1e-3)
        let x = random(2 * 3 * 36, seed: 9)
        let (want, got) = (try outputs(masked, x), try outputs(pruned, x))
        let scale = want.map { abs($0) }.max() ?? 1
        for (u, v) in zip(want, got) { #expect(abs(u - v) <= 1e-5 * max(scale, 1)) }
        #expect(want != (try outputs(try model(), x)), "masking changed nothing")
    }

    /// A trainer holds every masked slice at zero across optimizer steps; without the hold the
    /// gradients move b's off zero. (A masked channel before BatchNormalization and Relu gets no
    /// gradient at all: γ = β = 0 leaves Relu at its kink.)
    @Test func trainingHoldsMaskedChannelsAtZero() throws {
        let masked = try model()
        let mask = try Pruner.mask(masked, options: PruningOptions(criterion: MagnitudeImportance(norm: 2),
                                                                   allocation: AllocationOptions(target: .ratio(0.4), strategy: .global)))
        var labels: [Int32] = []
        for i in 0..<32 { labels.append(Int32(i % 4)) }
        let data = Dataset(images: random(32 * 3 * 36, seed: 4), labels: labels, sampleShape: [3, 6, 6], classes: 4)
        func train(holding: Bool) throws -> [String: [Float]] {
            var o = TrainingOptions()
            o.batch = 8
            o.epochs = 2
            o.schedule = Schedule(kind: .constant, lr: 0.2)
            let t = try Trainer(model: try Pruner.copy(masked), options: o)
            if holding { t.heldAtZero = mask.zeroed }
            _ = try t.fit(train: data, validation: nil)
            let out = try Pruner.copy(masked)
            t.writeBack(into: out)
            return Dictionary(out.graph.initializers.map { ($0.name, $0.floatValues() ?? []) }, uniquingKeysWith: { a, _ in a })
        }
        func slices(_ w: [String: [Float]]) -> [Float] {
            var out: [Float] = []
            for z in mask.zeroed {
                let v = w[z.tensor] ?? []
                let n = z.dims[z.axis]
                let inner = z.dims[(z.axis + 1)...].reduce(1, *)
                let outer = z.dims[..<z.axis].reduce(1, *)
                for o in 0..<outer {
                    for p in z.positions { out += v[((o * n + p) * inner)..<((o * n + p + 1) * inner)] }
                }
            }
            return out
        }
        #expect(mask.zeroed.contains { $0.tensor == "wb" })
        let free = try train(holding: false), held = try train(holding: true)
        #expect(slices(free).contains { $0 != 0 }, "training left the masked slices at zero by itself: the test shows nothing")
        #expect(slices(held).allSatisfy { $0 == 0 })
        let before = Dictionary(masked.graph.initializers.map { ($0.name, $0.floatValues() ?? []) }, uniquingKeysWith: { a, _ in a })
        #expect(held["wb"] != before["wb"], "the unmasked weights did not train")
    }
}
