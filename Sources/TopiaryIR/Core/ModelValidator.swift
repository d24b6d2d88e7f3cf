/// Structural checks every loaded model passes before any stage sees it.
public enum ModelValidator {
    /// Throws when a node uses an operator unknown to the default ONNX domain, reads a value that
    /// nothing defines, or (unless `cycles` is false, for a caller whose next step sorts the graph
    /// anyway, as shape inference does) when the graph has a cycle.
    public static func validate(_ model: Model, cycles: Bool = true) throws {
        try validate(model.graph, outer: [], cycles: cycles)
    }

    static func validate(_ graph: Graph, outer: Set<String>, cycles: Bool) throws {
        var defined = outer
        for i in graph.inputs { defined.insert(i.name) }
        for t in graph.initializers { defined.insert(t.name) }
        for n in graph.nodes { for o in n.outputs where !o.isEmpty { defined.insert(o) } }
        for node in graph.nodes {
            if node.isDefaultDomain && !OnnxOperators.all.contains(node.opType) {
                throw IRError.unknownOperator(op: node.opType, node: node.label)
            }
            for name in node.inputs where !name.isEmpty && !defined.contains(name) {
                throw IRError.invalid("node '\(node.label)' reads '\(name)', which no node, graph input or initializer defines")
            }
            for attr in node.attributes { for g in attr.subgraphs { try validate(g, outer: defined, cycles: cycles) } }
        }
        for o in graph.outputs where !defined.contains(o.name) {
            throw IRError.invalid("graph output '\(o.name)' is not produced by any node, input or initializer")
        }
        if cycles { _ = try graph.topologicalOrder() }
    }
}
