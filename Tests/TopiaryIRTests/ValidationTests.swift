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

    @Test func topologicalOrderPutsProducersFirst() throws {
        let m = B.model([B.node("Relu", ["a"], ["b"]), B.node("Neg", ["x"], ["a"])], inputs: [B.value("x", [1])], outputs: ["b"])
        #expect(try m.graph.topologicalOrder() == [1, 0])
    }
}
