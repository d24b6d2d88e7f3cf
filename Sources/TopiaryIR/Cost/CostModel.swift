/// What one node costs at batch size 1 (every symbolic dimension taken as 1).
public struct NodeCost: Codable, Sendable, Equatable {
    public var name: String
    public var opType: String
    /// Shape of the first output, as text (`[1,16,8,8]`), or "?" when unknown.
    public var outputShape: String
    /// Trainable parameters first used by this node (shared weights count once).
    public var params: Int
    /// Multiply-accumulates of the node's matrix products (Conv, ConvTranspose, Gemm, MatMul).
    public var macs: Int
    /// Floating-point operations: 2 per MAC plus the documented per-element counts.
    public var flops: Int
    /// Bytes of the node's outputs.
    public var activationBytes: Int
    /// False when a shape was unknown or the op has no cost rule; its counts are then 0.
    public var analysed: Bool

    enum CodingKeys: String, CodingKey {
        case name, opType = "op", outputShape = "output_shape", params, macs, flops, activationBytes = "activation_bytes", analysed
    }
}

/// Totals of a cost report.
public struct CostTotals: Codable, Sendable, Equatable {
    public var params: Int
    public var macs: Int
    public var flops: Int
    public var activationBytes: Int
    /// Bytes of every constant tensor stored in the model (weights, BN statistics, shapes).
    public var weightBytes: Int

    enum CodingKeys: String, CodingKey {
        case params, macs, flops, activationBytes = "activation_bytes", weightBytes = "weight_bytes"
    }
}

/// Per-node costs and totals of a model, with the nodes that could not be analysed.
public struct CostReport: Sendable {
    public var nodes: [NodeCost]
    public var totals: CostTotals
    public var unanalysed: [UnanalysedNode]
}

/// Counts parameters, MACs, FLOPs and activation memory; the conventions are in docs/cost-model.md.
public enum CostModel {
    public static func analyse(_ model: Model) throws -> (CostReport, ShapeTable) {
        let shapes = try ShapeInference.run(model)
        return (try analyse(model.graph, shapes: shapes), shapes)
    }

    /// Costs of `graph` from `shapes`, which must have been inferred on this graph as it is now.
    public static func analyse(_ graph: Graph, shapes: ShapeTable) throws -> CostReport {
        let order = shapes.order.count == graph.nodes.count ? shapes.order : try graph.topologicalOrder()
        let constants = ConstantSources(graph, order: order, shapes: shapes)
        var counted = Set<String>()
        var costs: [NodeCost] = []
        var unanalysed = shapes.unanalysed
        let missing = Set(shapes.unanalysed.map(\.node))
        for i in order {
            let node = graph.nodes[i]
            var cost = NodeCost(name: node.label, opType: node.opType, outputShape: "?", params: 0, macs: 0, flops: 0, activationBytes: 0, analysed: false)
            if let out = node.outputs.first, let t = shapes.type(of: out) {
                cost.outputShape = t.shape.map(shapeText) ?? "?"
            }
            // Parameters: constant floating-point inputs in a weight slot, each counted once.
            for slot in CostRules.parameterSlots(of: node) where slot < node.inputs.count {
                guard let source = constants.source(of: node.inputs[slot]), !counted.contains(source.name), source.type.isFloatingPoint else { continue }
                if CostRules.scalarOnlySlots.contains(node.opType) && source.elements <= 1 { continue }
                counted.insert(source.name)
                cost.params += source.elements
            }
            var bytes = 0
            var shapesKnown = true
            for o in node.outputs where !o.isEmpty {
                guard let t = shapes.type(of: o), let n = t.elementCountAtUnitBatch else { shapesKnown = false; continue }
                bytes += t.elemType.byteCount(elements: n) ?? 0
            }
            cost.activationBytes = bytes
            if constants.isConstant(node) {
                cost.analysed = true  // constant producers cost nothing at run time
            } else if shapesKnown, !missing.contains(node.label), let rule = CostRules.table[node.opType] {
                if let (macs, flops) = rule(CostContext(node: node, shapes: shapes)) {
                    (cost.macs, cost.flops, cost.analysed) = (macs, flops, true)
                } else {
                    unanalysed.append(UnanalysedNode(node: node.label, opType: node.opType, reason: "cost needs shapes that are unknown"))
                }
            } else if !missing.contains(node.label) {
                let reason = shapesKnown ? "no cost rule for \(node.opType)" : "output shape unknown"
                unanalysed.append(UnanalysedNode(node: node.label, opType: node.opType, reason: reason))
            }
            costs.append(cost)
        }
        let weightBytes = graph.initializers.reduce(0) { $0 + $1.buffer.count }
            + graph.nodes.filter { $0.opType == "Constant" }.compactMap { ConstantValue.tensor(of: $0)?.buffer.count }.reduce(0, +)
        let totals = CostTotals(
            params: costs.reduce(0) { $0 + $1.params }, macs: costs.reduce(0) { $0 + $1.macs },
            flops: costs.reduce(0) { $0 + $1.flops }, activationBytes: costs.reduce(0) { $0 + $1.activationBytes },
            weightBytes: weightBytes)
        return CostReport(nodes: costs, totals: totals, unanalysed: unanalysed)
    }
}

/// `[1,16,8,8]`, built in one string (short ones need no memory of their own).
func shapeText(_ dims: [Dim]) -> String {
    var s = "["
    for (k, d) in dims.enumerated() {
        if k > 0 { s.append(",") }
        s.append(d.description)
    }
    s.append("]")
    return s
}

/// Finds where constant values come from: initializers, `Constant` nodes, `ConstantOfShape` of a
/// known shape, and `Identity` of any of those.
struct ConstantSources {
    struct Source {
        let name: String
        let type: DataType
        let elements: Int
    }

    private var sources: [String: Source] = [:]
    private var constantNodes = Set<String>()
    private static let constantOps: Set<String> = ["Constant", "ConstantOfShape", "Identity"]

    init(_ graph: Graph, order: [Int], shapes: ShapeTable) {
        sources.reserveCapacity(graph.initializers.count)
        for i in graph.initializers.indices {
            let t = graph.initializers[i]
            sources[t.name] = Source(name: t.name, type: t.dataType, elements: t.elementCount)
        }
        for i in order where Self.constantOps.contains(graph.nodes[i].opType) {
            let node = graph.nodes[i]
            guard let out = node.outputs.first, node.isDefaultDomain else { continue }
            switch node.opType {
            case "Constant":
                if let t = ConstantValue.tensor(of: node) { sources[out] = Source(name: out, type: t.dataType, elements: t.elementCount) }
            case "ConstantOfShape":
                if let t = shapes.type(of: out), let n = t.staticShape?.reduce(1, *) { sources[out] = Source(name: out, type: t.elemType, elements: n) }
            case "Identity":
                // Exporters deduplicate equal weights into Identity copies; each copy is its own parameter.
                if let i = node.input(0), let s = sources[i] { sources[out] = Source(name: out, type: s.type, elements: s.elements) }
            default:
                continue
            }
            if sources[out] != nil { constantNodes.insert(node.label) }
        }
    }

    func source(of name: String) -> Source? { sources[name] }

    func isConstant(_ node: Node) -> Bool { constantNodes.contains(node.label) }
}
