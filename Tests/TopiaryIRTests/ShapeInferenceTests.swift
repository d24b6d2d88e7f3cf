import Testing
import TopiaryIR
import TopiaryTestSupport

@Suite struct ShapeInferenceTests {
    typealias B = GraphBuilder

    @Test func convWithPadsStridesAndDilation() throws {
        let w = Tensor(name: "w", floats: Array(repeating: 0, count: 8 * 3 * 3 * 3), dims: [8, 3, 3, 3])
        let conv = B.node("Conv", ["x", "w"], ["y"], ints: ["pads": [1, 1, 1, 1], "strides": [2, 2], "dilations": [2, 2]])
        let m = B.model([conv], inputs: [B.value("x", ["batch", 3, 17, 17])], outputs: ["y"], initializers: [w])
        // (17 + 2 - 2*(3-1) - 1) / 2 + 1 = 8
        #expect(try inferredShape(m, "y") == "[batch,8,8,8]")
    }

    @Test func autoPadSameAndDepthwiseGroups() throws {
        let w = Tensor(name: "w", floats: Array(repeating: 0, count: 16 * 9), dims: [16, 1, 3, 3])
        var conv = B.node("Conv", ["x", "w"], ["y"], ints: ["strides": [2, 2]], int: ["group": 16])
        conv.setAttribute("auto_pad", .string(Array("SAME_UPPER".utf8)))
        let m = B.model([conv], inputs: [B.value("x", [1, 16, 7, 7])], outputs: ["y"], initializers: [w])
        #expect(try inferredShape(m, "y") == "[1,16,4,4]")
    }

    @Test func poolingCeilModeDropsWindowStartingInPadding() throws {
        let pool = B.node("MaxPool", ["x"], ["y"], ints: ["kernel_shape": [2, 2], "strides": [2, 2]], int: ["ceil_mode": 1])
        let m = B.model([pool], inputs: [B.value("x", [1, 1, 5, 5])], outputs: ["y"])
        #expect(try inferredShape(m, "y") == "[1,1,3,3]")
    }

    @Test func shapeSubgraphFoldsIntoStaticReshape() throws {
        // Shape -> Gather(0) -> Unsqueeze -> Concat(-1) -> Reshape: the batch stays symbolic.
        let nodes = [
            B.node("Shape", ["x"], ["s"]),
            Node(name: "g", opType: "Gather", inputs: ["s", "zero"], outputs: ["n"], attributes: [Attribute(name: "axis", value: .int(0))]),
            B.node("Unsqueeze", ["n", "axes"], ["n1"]),
            Node(name: "c", opType: "Concat", inputs: ["n1", "minus1"], outputs: ["shape"], attributes: [Attribute(name: "axis", value: .int(0))]),
            B.node("Reshape", ["x", "shape"], ["y"]),
        ]
        let inits = [Tensor(name: "zero", int64s: [0], dims: []), Tensor(name: "axes", int64s: [0], dims: [1]),
                     Tensor(name: "minus1", int64s: [-1], dims: [1])]
        let m = B.model(nodes, inputs: [B.value("x", ["batch", 4, 3, 2])], outputs: ["y"], initializers: inits)
        #expect(try inferredShape(m, "y") == "[batch,24]")
    }

    @Test func reshapeInfersMinusOneAndCopiesZero() throws {
        let target = Tensor(name: "t", int64s: [0, -1, 2], dims: [3])
        let m = B.model([B.node("Reshape", ["x", "t"], ["y"])], inputs: [B.value("x", [2, 3, 4])], outputs: ["y"], initializers: [target])
        #expect(try inferredShape(m, "y") == "[2,6,2]")
    }

    @Test func flattenKeepsSymbolicBatch() throws {
        let m = B.model([B.node("Flatten", ["x"], ["y"])], inputs: [B.value("x", ["n", 32, 2, 2])], outputs: ["y"])
        #expect(try inferredShape(m, "y") == "[n,128]")
    }

    @Test(arguments: [(12, true), (13, false)])
    func squeezeAxesMovedFromAttributeToInput(opset: Int, asAttribute: Bool) throws {
        let node = asAttribute ? B.node("Squeeze", ["x"], ["y"], ints: ["axes": [2, 3]]) : B.node("Squeeze", ["x", "axes"], ["y"])
        let inits = asAttribute ? [] : [Tensor(name: "axes", int64s: [2, 3], dims: [2])]
        let m = B.model([node], inputs: [B.value("x", [1, 8, 1, 1])], outputs: ["y"], initializers: inits, opset: opset)
        #expect(try inferredShape(m, "y") == "[1,8]")
    }

    @Test(arguments: [11, 13, 18])
    func splitSizesAcrossOpsets(opset: Int) throws {
        var node: Node
        var inits: [Tensor] = []
        switch opset {
        case 11: node = B.node("Split", ["x"], ["a", "b"], ints: ["split": [2, 6]], int: ["axis": 1])
        case 13:
            node = B.node("Split", ["x", "sizes"], ["a", "b"], int: ["axis": 1])
            inits = [Tensor(name: "sizes", int64s: [2, 6], dims: [2])]
        default: node = B.node("Split", ["x"], ["a", "b"], int: ["axis": 1, "num_outputs": 2])
        }
        let m = B.model([node], inputs: [B.value("x", [1, 8, 4, 4])], outputs: ["a", "b"], initializers: inits, opset: opset)
        #expect(try inferredShape(m, "a") == (opset == 18 ? "[1,4,4,4]" : "[1,2,4,4]"))
        #expect(try inferredShape(m, "b") == (opset == 18 ? "[1,4,4,4]" : "[1,6,4,4]"))
    }

    @Test func sliceWithNegativeIndicesAndSteps() throws {
        let inits = [Tensor(name: "s", int64s: [-1, 0], dims: [2]), Tensor(name: "e", int64s: [Int64.min, 10], dims: [2]),
                     Tensor(name: "a", int64s: [1, 2], dims: [2]), Tensor(name: "st", int64s: [-2, 3], dims: [2])]
        let m = B.model([B.node("Slice", ["x", "s", "e", "a", "st"], ["y"])], inputs: [B.value("x", [1, 7, 8])], outputs: ["y"], initializers: inits)
        // axis 1: 6, 4, 2, 0 -> 4; axis 2: 0, 3, 6 -> 3
        #expect(try inferredShape(m, "y") == "[1,4,3]")
    }

    @Test func broadcastingAndMatMul() throws {
        let nodes = [B.node("Add", ["x", "b"], ["s"]), B.node("MatMul", ["s", "w"], ["y"])]
        let inits = [Tensor(name: "b", floats: [0, 0, 0], dims: [3]), Tensor(name: "w", floats: Array(repeating: 0, count: 15), dims: [3, 5])]
        let m = B.model(nodes, inputs: [B.value("x", ["n", 7, 3])], outputs: ["y"], initializers: inits)
        #expect(try inferredShape(m, "y") == "[n,7,5]")
    }

    @Test func unknownCustomOpIsReportedNotGuessed() throws {
        var custom = B.node("Mystery", ["x"], ["y"])
        custom.domain = "vendor"
        let m = B.model([custom, B.node("Relu", ["y"], ["z"])], inputs: [B.value("x", [1, 2])], outputs: ["z"])
        let table = try ShapeInference.run(m)
        #expect(table.type(of: "y") == nil)
        #expect(table.type(of: "z") == nil)
        #expect(table.unanalysed.map(\.opType).contains("Mystery"))
    }
}
