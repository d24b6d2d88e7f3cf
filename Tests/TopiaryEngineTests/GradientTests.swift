import Testing
import TopiaryIR
@testable import TopiaryEngine
import TopiaryTestSupport

/// Every kernel's backward pass against central differences of L = Σ r ⊙ f(x) for a fixed
/// random r: the analytic gradient of each input and parameter must match the numeric one.
@Suite struct GradientTests {
    typealias B = GraphBuilder

    struct Case: CustomTestStringConvertible, Sendable {
        let name: String
        let build: @Sendable () -> Model
        var testDescription: String { name }
    }

    static func rand(_ n: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var r = SplitMix(seed: seed)
        return (0..<n).map { _ in Float(r.nextUnit() * 2 - 1) * scale }
    }

    static func w(_ name: String, _ dims: [Int], seed: UInt64, scale: Float = 0.5) -> Tensor {
        Tensor(name: name, floats: rand(dims.reduce(1, *), seed: seed, scale: scale), dims: dims)
    }

    static func single(_ node: Node, input: [Int], inits: [Tensor] = [], opset: Int = 17) -> Model {
        B.model([node], inputs: [B.value("x", input)], outputs: [node.outputs[0]], initializers: inits, opset: opset)
    }

    static let cases: [Case] = [
        Case(name: "Conv pads stride dilation bias") {
            single(B.node("Conv", ["x", "w", "b"], ["y"], ints: ["pads": [1, 2, 1, 0], "strides": [2, 1], "dilations": [1, 2]]), input: [2, 3, 6, 5],
                   inits: [w("w", [4, 3, 3, 2], seed: 1), w("b", [4], seed: 2)])
        },
        Case(name: "Conv one sample") {
            single(B.node("Conv", ["x", "w", "b"], ["y"], ints: ["pads": [1, 1, 1, 1]]), input: [1, 2, 4, 4], inits: [w("w", [3, 2, 3, 3], seed: 21), w("b", [3], seed: 22)])
        },
        Case(name: "Conv large image per sample") {
            single(B.node("Conv", ["x", "w"], ["y"], ints: ["pads": [1, 1, 1, 1]]), input: [2, 2, 16, 17], inits: [w("w", [3, 2, 3, 3], seed: 23)])
        },
        Case(name: "Conv pointwise large image") {
            single(B.node("Conv", ["x", "w", "b"], ["y"]), input: [2, 3, 16, 16], inits: [w("w", [4, 3, 1, 1], seed: 24), w("b", [4], seed: 25)])
        },
        Case(name: "Conv depthwise") {
            single(B.node("Conv", ["x", "w"], ["y"], ints: ["pads": [1, 1, 1, 1]], int: ["group": 3]), input: [2, 3, 5, 5], inits: [w("w", [3, 1, 3, 3], seed: 3)])
        },
        Case(name: "Conv depthwise stride 2") {
            single(B.node("Conv", ["x", "w", "b"], ["y"], ints: ["pads": [1, 0, 1, 2], "strides": [2, 2]], int: ["group": 2]), input: [2, 2, 7, 6],
                   inits: [w("w", [2, 1, 3, 3], seed: 26), w("b", [2], seed: 27)])
        },
        Case(name: "Conv large image stride 2 dilation") {
            single(B.node("Conv", ["x", "w"], ["y"], ints: ["pads": [2, 1, 2, 1], "strides": [2, 3], "dilations": [2, 1]]), input: [1, 2, 33, 34], inits: [w("w", [2, 2, 3, 3], seed: 28)])
        },
        Case(name: "Conv grouped") {
            single(B.node("Conv", ["x", "w"], ["y"], int: ["group": 2]), input: [1, 4, 4, 4], inits: [w("w", [6, 2, 2, 2], seed: 4)])
        },
        Case(name: "BatchNormalization training") {
            var n = B.node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])
            n.setAttribute("epsilon", .float(1e-3))
            return single(n, input: [3, 2, 2, 2], inits: [w("g", [2], seed: 5), w("b", [2], seed: 6), Tensor(name: "m", floats: [0, 0], dims: [2]), Tensor(name: "v", floats: [1, 1], dims: [2])])
        },
        Case(name: "Gemm transB bias") {
            single(B.node("Gemm", ["x", "w", "b"], ["y"], int: ["transB": 1]), input: [3, 5], inits: [w("w", [4, 5], seed: 7), w("b", [4], seed: 8)])
        },
        Case(name: "MatMul") { single(B.node("MatMul", ["x", "w"], ["y"]), input: [2, 3, 4], inits: [w("w", [4, 2], seed: 9)]) },
        Case(name: "Add broadcast bias") { single(B.node("Add", ["x", "b"], ["y"]), input: [2, 3, 2, 2], inits: [w("b", [3, 1, 1], seed: 10)]) },
        Case(name: "Mul broadcast") { single(B.node("Mul", ["x", "s"], ["y"]), input: [2, 3, 2], inits: [w("s", [3, 1], seed: 11)]) },
        Case(name: "Sub") { single(B.node("Sub", ["s", "x"], ["y"]), input: [2, 3], inits: [w("s", [2, 3], seed: 12)]) },
        Case(name: "Div") { single(B.node("Div", ["x", "d"], ["y"]), input: [2, 3], inits: [Tensor(name: "d", floats: [1.5, -2, 3], dims: [3])]) },
        Case(name: "PRelu") { single(B.node("PRelu", ["x", "s"], ["y"]), input: [2, 3, 2], inits: [w("s", [3, 1], seed: 13)]) },
        Case(name: "Relu") { single(B.node("Relu", ["x"], ["y"]), input: [4, 5]) },
        Case(name: "LeakyRelu") { single(B.node("LeakyRelu", ["x"], ["y"]), input: [4, 5]) },
        Case(name: "Clip") { single(B.node("Clip", ["x", "lo", "hi"], ["y"]), input: [4, 5], inits: [Tensor(name: "lo", floats: [-0.5], dims: []), Tensor(name: "hi", floats: [0.6], dims: [])]) },
        Case(name: "Sigmoid") { single(B.node("Sigmoid", ["x"], ["y"]), input: [4, 5]) },
        Case(name: "Tanh") { single(B.node("Tanh", ["x"], ["y"]), input: [4, 5]) },
        Case(name: "HardSigmoid") { single(B.node("HardSigmoid", ["x"], ["y"]), input: [4, 5]) },
        Case(name: "HardSwish") { single(B.node("HardSwish", ["x"], ["y"]), input: [4, 5]) },
        Case(name: "MaxPool") { single(B.node("MaxPool", ["x"], ["y"], ints: ["kernel_shape": [2, 2], "strides": [2, 2], "pads": [0, 0, 1, 1]]), input: [1, 2, 5, 5]) },
        Case(name: "AveragePool") { single(B.node("AveragePool", ["x"], ["y"], ints: ["kernel_shape": [3, 3], "pads": [1, 1, 1, 1]]), input: [1, 2, 4, 4]) },
        Case(name: "GlobalAveragePool") { single(B.node("GlobalAveragePool", ["x"], ["y"]), input: [2, 3, 3, 3]) },
        Case(name: "ReduceMean") { single(B.node("ReduceMean", ["x"], ["y"], ints: ["axes": [2, 3]]), input: [2, 3, 2, 2]) },
        Case(name: "Softmax") { single(B.node("Softmax", ["x"], ["y"]), input: [3, 4]) },
        Case(name: "Flatten") { single(B.node("Flatten", ["x"], ["y"]), input: [2, 3, 2]) },
        Case(name: "Reshape") { single(B.node("Reshape", ["x", "s"], ["y"]), input: [2, 6], inits: [Tensor(name: "s", int64s: [2, 3, 2], dims: [3])]) },
        Case(name: "Transpose") { single(B.node("Transpose", ["x"], ["y"], ints: ["perm": [0, 2, 1, 3]]), input: [2, 3, 2, 2]) },
        Case(name: "Pad") { single(B.node("Pad", ["x", "p"], ["y"]), input: [1, 2, 3], inits: [Tensor(name: "p", int64s: [0, 1, 2, 0, 0, 1], dims: [6])], opset: 13) },
        Case(name: "Slice step") {
            single(B.node("Slice", ["x", "s", "e", "a", "st"], ["y"]), input: [2, 6, 3], inits: [Tensor(name: "s", int64s: [5], dims: [1]), Tensor(name: "e", int64s: [0], dims: [1]), Tensor(name: "a", int64s: [1], dims: [1]), Tensor(name: "st", int64s: [-2], dims: [1])])
        },
        Case(name: "Split and Concat") {
            let nodes = [B.node("Split", ["x", "sz"], ["a", "b"], int: ["axis": 1]), B.node("Relu", ["a"], ["r"]), B.node("Concat", ["b", "r"], ["y"], int: ["axis": 1])]
            return B.model(nodes, inputs: [B.value("x", [2, 5, 2])], outputs: ["y"], initializers: [Tensor(name: "sz", int64s: [2, 3], dims: [2])])
        },
    ]

    /// Training-mode BatchNormalization on small planes far from zero (mean 1000, spread 0.5):
    /// the batch statistics must still normalise each channel to mean 0 and variance 1 (sums
    /// of x and x² in floats would lose the variance entirely).
    @Test func batchNormStatisticsSurviveALargeMean() throws {
        var bn = B.node("BatchNormalization", ["x", "g", "b", "m", "v"], ["y"])
        bn.setAttribute("epsilon", .float(1e-6))
        let model = B.model([bn], inputs: [B.value("x", [8, 2, 3, 3])], outputs: ["y"],
                            initializers: [Tensor(name: "g", floats: [1, 1], dims: [2]), Tensor(name: "b", floats: [0, 0], dims: [2]),
                                           Tensor(name: "m", floats: [0, 0], dims: [2]), Tensor(name: "v", floats: [1, 1], dims: [2])])
        let program = try Program(model: model, batch: 8)
        let x = Self.rand(8 * 18, seed: 41, scale: 0.5).map { $0 + 1000 }
        let y = Array(x.withUnsafeBufferPointer { program.forward($0, training: true) })
        for ch in 0..<2 {
            var values: [Double] = []
            for s in 0..<8 { for q in 0..<9 { values.append(Double(y[(s * 2 + ch) * 9 + q])) } }
            let mean: Double = values.reduce(0, +) / Double(values.count)
            var variance: Double = 0
            for v in values { variance += (v - mean) * (v - mean) }
            variance /= Double(values.count)
            #expect(abs(mean) < 1e-3, "channel \(ch) mean \(mean)")
            #expect(abs(variance - 1) < 2e-3, "channel \(ch) variance \(variance)")
        }
    }

    @Test(arguments: cases)
    func backwardMatchesFiniteDifferences(_ c: Case) throws {
        let model = c.build()
        let batch = model.graph.inputs[0].type.tensorType?.staticShape?.first ?? 1
        let program = try Program(model: model, batch: batch, inputGradient: true)
        let n = program.inputShape.reduce(batch, *)
        var x = Self.rand(n, seed: 99)
        // Keep inputs away from the kinks of piecewise ops.
        x = x.map { abs($0) < 0.05 ? $0 + 0.1 : $0 }
        let outCount = program.outputShape.reduce(1, *)
        let r = Self.rand(outCount, seed: 7)
        func loss() -> Double {
            let y = x.withUnsafeBufferPointer { program.forward($0, training: true) }
            return zip(y, r).reduce(0.0) { $0 + Double($1.0 * $1.1) }
        }
        _ = loss()
        r.withUnsafeBufferPointer { program.backward($0) }
        let inputGrad = Array(UnsafeBufferPointer(start: program.store.grads[program.inputID]!, count: n))
        let paramGrads = program.parameters.indices.map { i -> [Float] in
            let p = program.parameter(i)
            return Array(UnsafeBufferPointer(start: p.grad, count: p.count))
        }
        let h: Float = 1e-2
        func check(_ analytic: Float, _ numeric: Double, _ what: String) {
            let tolerance = 2e-2 * max(1, abs(numeric))
            #expect(abs(Double(analytic) - numeric) <= tolerance, "\(c.name): \(what) analytic \(analytic) numeric \(numeric)")
        }
        for i in stride(from: 0, to: n, by: max(1, n / 24)) {
            let old = x[i]
            x[i] = old + h; let up = loss()
            x[i] = old - h; let down = loss()
            x[i] = old
            check(inputGrad[i], (up - down) / Double(2 * h), "dx[\(i)]")
        }
        for (pi, grads) in paramGrads.enumerated() {
            let p = program.parameter(pi)
            for i in stride(from: 0, to: p.count, by: max(1, p.count / 12)) {
                let old = p.value[i]
                p.value[i] = old + h; let up = loss()
                p.value[i] = old - h; let down = loss()
                p.value[i] = old
                check(grads[i], (up - down) / Double(2 * h), "d\(program.parameters[pi].name)[\(i)]")
            }
        }
    }
}
