/// What shape inference knows about one value.
public struct ValueFacts: Sendable, Equatable {
    /// Element type and shape, when known.
    public var type: TensorType?
    /// The contents of a small integer tensor (shape arithmetic: `Shape`, `Gather`, `Concat`…),
    /// elements possibly symbolic, in row-major order.
    public var value: [Dim]?
    /// The contents of a small constant float tensor (Resize scales, Clip bounds).
    public var floats: [Float]?

    public init(type: TensorType?, value: [Dim]? = nil, floats: [Float]? = nil) {
        self.type = type
        self.value = value
        self.floats = floats
    }
}

/// A node whose outputs shape inference could not determine, and why.
public struct UnanalysedNode: Sendable, Equatable {
    public var node: String
    public var opType: String
    public var reason: String
}

/// Types and shapes of every value of a graph.
public struct ShapeTable: Sendable {
    public var facts: [String: ValueFacts] = [:]
    /// Nodes with no shape rule or whose rule could not run (their outputs stay unknown).
    public var unanalysed: [UnanalysedNode] = []
    /// The topological order of the graph's nodes the inference walked (valid while the graph's
    /// node list is unchanged).
    public var order: [Int] = []

    /// The type of `name`, when known.
    public func type(of name: String) -> TensorType? { facts[name]?.type }

    /// The static shape of `name`, when every dimension is known.
    public func staticShape(of name: String) -> [Int]? { facts[name]?.type?.staticShape }
}

/// Why a shape rule could not run on a node.
struct ShapeFailure: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Infers element types and shapes through a graph, in topological order, from the graph inputs'
/// declared types, initializers and `Constant` nodes. A symbolic batch dimension stays symbolic;
/// integer shape arithmetic is folded where its inputs are known, so `Shape → Gather → Concat →
/// Reshape` chains give static shapes. Ops without a rule are kept and listed, never guessed.
public enum ShapeInference {
    /// Largest integer tensor whose contents are tracked.
    static let valueLimit = 1024

    public static func run(_ model: Model) throws -> ShapeTable {
        try run(model.graph, opset: model.defaultOpset)
    }

    public static func run(_ graph: Graph, opset: Int) throws -> ShapeTable {
        var table = ShapeTable()
        table.facts.reserveCapacity(graph.initializers.count + graph.inputs.count + graph.nodes.count * 2)
        for i in graph.initializers.indices {
            table.facts[graph.initializers[i].name] = facts(of: graph.initializers[i])
        }
        for input in graph.inputs where table.facts[input.name] == nil {
            table.facts[input.name] = ValueFacts(type: input.type.tensorType)
        }
        let order = try graph.topologicalOrder()
        table.order = order
        for i in order {
            let node = graph.nodes[i]
            let ctx = ShapeContext(node: node, opset: opset, inputs: node.inputs.map { $0.isEmpty ? nil : table.facts[$0] })
            var outputs: [ValueFacts]?
            if !node.isDefaultDomain {
                table.unanalysed.append(UnanalysedNode(node: node.label, opType: node.opType, reason: "custom domain '\(node.domain)'"))
            } else if let rule = ShapeRules.table[node.opType] {
                do {
                    outputs = try rule(ctx)
                } catch let failure as ShapeFailure {
                    table.unanalysed.append(UnanalysedNode(node: node.label, opType: node.opType, reason: failure.reason))
                }
            } else {
                table.unanalysed.append(UnanalysedNode(node: node.label, opType: node.opType, reason: "no shape rule for \(node.opType)"))
            }
            for (k, name) in node.outputs.enumerated() where !name.isEmpty {
                if let outputs, k < outputs.count {
                    table.facts[name] = outputs[k]
                } else {
                    table.facts[name] = ValueFacts(type: nil)
                }
            }
        }
        // Declared types fill in what inference could not determine.
        for info in graph.valueInfo + graph.outputs {
            if let declared = info.type.tensorType, table.facts[info.name]?.type?.shape == nil {
                var f = table.facts[info.name] ?? ValueFacts(type: nil)
                f.type = declared
                table.facts[info.name] = f
            }
        }
        return table
    }

    /// Facts of a constant tensor: its type, and its contents when it is a small integer tensor.
    static func facts(of t: Tensor) -> ValueFacts {
        let type = TensorType(t.dataType, t.dims.map { .value($0) })
        if t.dataType.isInteger, t.elementCount <= valueLimit, let v = t.int64Values() {
            return ValueFacts(type: type, value: v.map { .value(Int($0)) })
        }
        if t.dataType.isFloatingPoint, t.elementCount <= 16 {
            return ValueFacts(type: type, floats: t.floatValues())
        }
        return ValueFacts(type: type)
    }
}
