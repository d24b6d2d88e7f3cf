/// A computation graph (ONNX `GraphProto`): nodes, its inputs and outputs, constant initializers,
/// and type annotations. Values are referred to by name; `GraphIndex` answers who produces and who
/// consumes a value.
public final class Graph {
    public var name: String
    public var docString: String = ""
    public var nodes: [Node]
    public var inputs: [ValueInfo]
    public var outputs: [ValueInfo]
    public var valueInfo: [ValueInfo] = []
    public var initializers: [Tensor]
    public var sparseInitializers: [OpaqueMessage] = []
    public var quantizationAnnotations: [OpaqueMessage] = []
    public var metadataProps: [StringPair] = []
    /// Fields outside the schema, written back unchanged.
    public var unknownFields: [UnknownField] = []

    public init(name: String, nodes: [Node], inputs: [ValueInfo], outputs: [ValueInfo], initializers: [Tensor] = []) {
        self.name = name
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs
        self.initializers = initializers
    }

    /// Index of each initializer by name.
    public func initializerIndex() -> [String: Int] {
        var map: [String: Int] = [:]
        map.reserveCapacity(initializers.count)
        for i in initializers.indices { map[initializers[i].name] = i }
        return map
    }

    /// The initializer called `name`.
    public func initializer(named name: String) -> Tensor? {
        initializers.first { $0.name == name }
    }

    /// Graph inputs that are real model inputs: those not also listed as initializers (older
    /// exporters list every weight as an input too).
    public var modelInputs: [ValueInfo] {
        let inits = Set(initializers.map(\.name))
        return inputs.filter { !inits.contains($0.name) }
    }

    /// Constant tensors by value name: initializers, the values of `Constant` nodes whose value
    /// is a plain tensor, and `Identity` copies of either (exporters write shared weights so).
    public func constants() -> [String: Tensor] {
        var out: [String: Tensor] = [:]
        for t in initializers { out[t.name] = t }
        for node in nodes where node.opType == "Constant" && node.isDefaultDomain {
            if let out0 = node.outputs.first, let t = ConstantValue.tensor(of: node) { out[out0] = t }
        }
        var changed = true
        while changed {
            changed = false
            for node in nodes where node.opType == "Identity" && node.isDefaultDomain {
                if let i = node.input(0), let o = node.outputs.first, out[o] == nil, var t = out[i] {
                    t.name = o
                    out[o] = t
                    changed = true
                }
            }
        }
        return out
    }

    /// Node indices in an order where every node comes after the producers of its inputs; throws
    /// `IRError.cycle` when the graph has a cycle.
    public func topologicalOrder() throws -> [Int] {
        var producer: [String: Int] = [:]
        producer.reserveCapacity(nodes.count)
        for (i, node) in nodes.enumerated() {
            for o in node.outputs where !o.isEmpty { producer[o] = i }
        }
        // Exporters write nodes in order: check that first, with one look-up per input.
        var sorted = true
        check: for (i, node) in nodes.enumerated() {
            for name in node.inputs where !name.isEmpty {
                if let p = producer[name], p >= i { sorted = false; break check }
            }
            if node.hasSubgraphs {
                for name in node.capturedNames() {
                    if let p = producer[name], p >= i { sorted = false; break check }
                }
            }
        }
        if sorted { return Array(nodes.indices) }
        var indegree = [Int](repeating: 0, count: nodes.count)
        var users = [[Int]](repeating: [], count: nodes.count)
        for (i, node) in nodes.enumerated() {
            let captured = node.hasSubgraphs ? node.capturedNames() : []
            for names in [node.inputs, captured] {
                for name in names where !name.isEmpty {
                    // Nodes are visited in index order, so a repeated edge is always the last one added.
                    if let p = producer[name], users[p].last != i {
                        indegree[i] += 1
                        users[p].append(i)
                    }
                }
            }
        }
        var ready = (0..<nodes.count).filter { indegree[$0] == 0 }.reversed() as [Int]
        var order: [Int] = []
        order.reserveCapacity(nodes.count)
        while let i = ready.popLast() {
            order.append(i)
            for u in users[i] {
                indegree[u] -= 1
                if indegree[u] == 0 { ready.append(u) }
            }
        }
        if order.count != nodes.count {
            let stuck = (0..<nodes.count).filter { indegree[$0] > 0 }.prefix(5).map { nodes[$0].label }
            throw IRError.cycle(nodes: Array(stuck))
        }
        return order
    }
}

extension Node {
    /// True when an attribute holds a graph (an If/Loop/Scan body).
    var hasSubgraphs: Bool {
        attributes.contains { a in
            switch a.value {
            case .graph, .graphs: return true
            default: return false
            }
        }
    }

    /// Names an If/Loop/Scan body reads from the enclosing graph (outer-scope values).
    func capturedNames() -> [String] {
        var names: [String] = []
        for attr in attributes {
            for g in attr.subgraphs {
                let local = Set(g.inputs.map(\.name) + g.initializers.map(\.name) + g.nodes.flatMap(\.outputs))
                for n in g.nodes {
                    for i in n.inputs + n.capturedNames() where !i.isEmpty && !local.contains(i) { names.append(i) }
                }
            }
        }
        return names
    }
}

/// Who produces and who consumes each value of a graph, computed once.
public struct GraphIndex {
    /// Node index producing each value.
    public let producer: [String: Int]
    /// Node indices consuming each value (a node appears once per use).
    public let consumers: [String: [Int]]
    /// Names of the graph outputs.
    public let graphOutputs: Set<String>

    public init(_ graph: Graph) {
        var producer: [String: Int] = [:]
        var consumers: [String: [Int]] = [:]
        for (i, node) in graph.nodes.enumerated() {
            for o in node.outputs where !o.isEmpty { producer[o] = i }
            for name in node.inputs where !name.isEmpty { consumers[name, default: []].append(i) }
        }
        self.producer = producer
        self.consumers = consumers
        self.graphOutputs = Set(graph.outputs.map(\.name))
    }
}
