import Testing
import TopiaryIR
import TopiaryTestSupport

@Suite struct CostModelTests {
    typealias B = GraphBuilder

    @Test func convBatchNormReluGemmCounts() throws {
        let w = Tensor(name: "w", floats: Array(repeating: 0.1, count: 4 * 2 * 3 * 3), dims: [4, 2, 3, 3])
        let bias = Tensor(name: "b", floats: Array(repeating: 0, count: 4), dims: [4])
        let bn = ["g", "beta", "mean", "var"].map { Tensor(name: $0, floats: [1, 1, 1, 1], dims: [4]) }
        let fc = Tensor(name: "fc", floats: Array(repeating: 0, count: 16 * 10), dims: [10, 16])
        let nodes = [
            B.node("Conv", ["x", "w", "b"], ["c"], ints: ["pads": [1, 1, 1, 1]]),
            B.node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["n"]),
            B.node("Relu", ["n"], ["r"]),
            B.node("Flatten", ["r"], ["f"]),
            B.node("Gemm", ["f", "fc"], ["y"], int: ["transB": 1]),
        ]
        let m = B.model(nodes, inputs: [B.value("x", ["batch", 2, 2, 2])], outputs: ["y"], initializers: [w, bias] + bn + [fc])
        let (report, _) = try CostModel.analyse(m)
        let byOp = Dictionary(uniqueKeysWithValues: report.nodes.map { ($0.opType, $0) })
        // Conv: 4*2*2 outputs x (2*3*3) MACs each; bias adds one FLOP per output.
        #expect(byOp["Conv"]?.macs == 16 * 18)
        #expect(byOp["Conv"]?.flops == 2 * 16 * 18 + 16)
        #expect(byOp["Conv"]?.params == 72 + 4)
        // BN: gamma and beta are parameters, running statistics are not; 2 FLOPs per element.
        #expect(byOp["BatchNormalization"]?.params == 8)
        #expect(byOp["BatchNormalization"]?.flops == 32)
        #expect(byOp["Relu"]?.flops == 16)
        #expect(byOp["Gemm"]?.macs == 160)
        #expect(report.totals.params == 76 + 8 + 160)
        #expect(report.unanalysed.isEmpty)
    }

    @Test func sharedWeightsCountOnceScalarsNever() throws {
        let w = Tensor(name: "w", floats: Array(repeating: 1, count: 6), dims: [2, 3])
        let six = Tensor(name: "six", floats: [6], dims: [])
        let nodes = [B.node("MatMul", ["x", "w"], ["a"]), B.node("MatMul", ["x", "w"], ["b"]), B.node("Add", ["a", "b"], ["s"]), B.node("Div", ["s", "six"], ["y"])]
        let m = B.model(nodes, inputs: [B.value("x", [4, 2])], outputs: ["y"], initializers: [w, six])
        let (report, _) = try CostModel.analyse(m)
        #expect(report.totals.params == 6)
        #expect(report.totals.macs == 2 * 4 * 3 * 2)
    }
}
