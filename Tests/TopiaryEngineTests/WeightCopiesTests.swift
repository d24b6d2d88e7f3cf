import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

/// Exporters write equal tensors once and hand out copies through Identity nodes. Training must
/// treat each copy as a weight of its own, as the framework did: a model with the tie trains to the
/// same weights as the same model with the copy written out.
@Suite struct WeightCopiesTests {
    typealias B = GraphBuilder

    func model(tied: Bool) -> Model {
        var r = SplitMix(seed: 7)
        let w = (0..<(4 * 4 * 9)).map { _ in Float(r.nextUnit() * 2 - 1) * 0.3 }
        let fc = (0..<12).map { _ in Float(r.nextUnit() * 2 - 1) }
        var nodes = [
            B.node("Conv", ["x", "w"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["a"], ["ra"]),
            B.node("Conv", ["ra", "w2"], ["b"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["b"], ["rb"]),
            B.node("GlobalAveragePool", ["rb"], ["p"]), B.node("Flatten", ["p"], ["f"]),
            Node(name: "fc", opType: "Gemm", inputs: ["f", "fc"], outputs: ["y"], attributes: [Attribute(name: "transB", value: .int(1))]),
        ]
        var inits = [Tensor(name: "w", floats: w, dims: [4, 4, 3, 3]), Tensor(name: "fc", floats: fc, dims: [3, 4])]
        if tied {
            nodes.insert(B.node("Identity", ["w"], ["w2"]), at: 0)
        } else {
            inits.append(Tensor(name: "w2", floats: w, dims: [4, 4, 3, 3]))
        }
        return B.model(nodes, inputs: [B.value("x", [1, 4, 5, 5])], outputs: ["y"], initializers: inits)
    }

    @Test func aTiedCopyTrainsAsItsOwnWeight() throws {
        var r = SplitMix(seed: 8)
        let data = Dataset(images: (0..<(32 * 100)).map { _ in Float(r.nextUnit()) }, labels: (0..<32).map { Int32($0 % 3) },
                           sampleShape: [4, 5, 5], classes: 3)
        var o = TrainingOptions()
        o.epochs = 3
        o.batch = 16
        o.schedule = Schedule(kind: .constant, lr: 0.1)
        var trained: [[String: [Float]]] = []
        for tied in [true, false] {
            let m = model(tied: tied)
            let trainer = try Trainer(model: m, options: o)
            _ = try trainer.fit(train: data, validation: nil)
            trainer.writeBack(into: m)
            #expect(!m.graph.nodes.contains { $0.opType == "Identity" })
            trained.append(Dictionary(uniqueKeysWithValues: m.graph.initializers.map { ($0.name, $0.floatValues() ?? []) }))
        }
        let (tied, written) = (trained[0], trained[1])
        #expect(Set(tied.keys) == ["w", "w2", "fc"])
        #expect(tied["w2"] != tied["w"], "the copy trained apart from its source")
        for name in ["w", "w2", "fc"] {
            let worst = zip(tied[name]!, written[name]!).map { abs($0 - $1) }.max() ?? 1
            #expect(worst < 1e-6, "\(name): \(worst)")
        }
    }
}
