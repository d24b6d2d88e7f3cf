import Testing
import TopiaryIR
import TopiaryTestSupport

@Suite struct PassTests {
    typealias B = GraphBuilder

    @Test func foldBatchNormRewritesWeightsAndRemovesTheNode() throws {
        let w = Tensor(name: "w", floats: [1, 2, 3, 4], dims: [2, 2, 1, 1])
        let bn = [Tensor(name: "g", floats: [2, 1], dims: [2]), Tensor(name: "beta", floats: [0.5, 0], dims: [2]),
                  Tensor(name: "mean", floats: [1, 0], dims: [2]), Tensor(name: "var", floats: [3, 0], dims: [2])]
        var bnNode = B.node("BatchNormalization", ["c", "g", "beta", "mean", "var"], ["y"])
        bnNode.setAttribute("epsilon", .float(1))
        let m = B.model([B.node("Conv", ["x", "w"], ["c"]), bnNode], inputs: [B.value("x", [1, 2, 1, 1])], outputs: ["y"], initializers: [w] + bn)
        #expect(try FoldBatchNorm.run(m) == 1)
        #expect(m.graph.nodes.map(\.opType) == ["Conv"])
        #expect(m.graph.nodes[0].outputs == ["y"])
        let conv = m.graph.nodes[0]
        let newW = try #require(m.graph.initializer(named: conv.inputs[1])?.floatValues())
        let newB = try #require(m.graph.initializer(named: conv.inputs[2])?.floatValues())
        // channel 0: s = 2 / sqrt(3 + 1) = 1; channel 1: s = 1 / sqrt(0 + 1) = 1
        #expect(newW == [1, 2, 3, 4])
        #expect(newB == [(0 - 1) * 1 + 0.5, 0])
        #expect(m.graph.initializers.count == 2)
    }

    @Test func float16KeepsFloat32Interface() throws {
        let w = Tensor(name: "w", floats: [1, 2], dims: [2])
        let m = B.model([B.node("Mul", ["x", "w"], ["y"])], inputs: [B.value("x", [2])], outputs: ["y"], initializers: [w])
        m.graph.outputs = [B.value("y", [2])]
        try ConvertFloat16.run(m)
        #expect(m.graph.nodes.map(\.opType) == ["Cast", "Mul", "Cast"])
        #expect(m.graph.initializer(named: "w")?.dataType == .float16)
        #expect(m.graph.inputs[0].type.tensorType?.elemType == .float)
        let table = try ShapeInference.run(m)
        #expect(table.type(of: "y")?.elemType == .float)
    }
}
