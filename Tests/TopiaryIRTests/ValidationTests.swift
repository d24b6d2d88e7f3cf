import Testing
import TopiaryIR
import TopiaryTestSupport

@Suite struct ValidationTests {
    typealias B = GraphBuilder

    @Test func cycleIsFound() {
        let m = B.model([B.node("Add", ["x", "b"], ["a"]), B.node("Relu", ["a"], ["b"])], inputs: [B.value("x", [1])], outputs: ["a"])
        #expect(throws: IRError.cycle(nodes: ["a", "b"])) { try ModelValidator.validate(m) }
    }

    @Test func unknownDefaultDomainOpIsAnError() {
        let m = B.model([B.node("Frobnicate", ["x"], ["y"])], inputs: [B.value("x", [1])], outputs: ["y"])
        #expect(throws: IRError.unknownOperator(op: "Frobnicate", node: "y")) { try ModelValidator.validate(m) }
    }

    @Test func customDomainOpIsAllowed() throws {
        var n = B.node("Frobnicate", ["x"], ["y"])
        n.domain = "vendor.ops"
        try ModelValidator.validate(B.model([n], inputs: [B.value("x", [1])], outputs: ["y"]))
    }

    /// Documentation and metadata sit behind one shared reference: changing a copy's must not
    /// change the original's (copy on write), for nodes and tensors alike.
    @Test func rareFieldsAreCopiedOnWrite() {
        var a = Node(name: "n", opType: "Relu", inputs: ["x"], outputs: ["y"])
        #expect(a.docString.isEmpty && a.metadataProps.isEmpty)
        a.docString = "first"
        var b = a
        b.docString = "second"
        b.metadataProps = [StringPair("k", "v")]
        #expect(a.docString == "first" && a.metadataProps.isEmpty)
        #expect(b.docString == "second" && b.metadataProps == [StringPair("k", "v")])
        var t = Tensor(name: "t", floats: [1], dims: [1])
        t.segment = (0, 1)
        var u = t
        u.segment = nil
        u.docString = "u"
        #expect(t.segment?.end == 1 && t.docString.isEmpty)
        #expect(u.segment == nil && u.docString == "u")
    }

    @Test func topologicalOrderPutsProducersFirst() throws {
        let m = B.model([B.node("Relu", ["a"], ["b"]), B.node("Neg", ["x"], ["a"])], inputs: [B.value("x", [1])], outputs: ["b"])
        #expect(try m.graph.topologicalOrder() == [1, 0])
    }
}
