/// What a cost rule sees of a node.
struct CostContext {
    let node: Node
    let shapes: ShapeTable

    func elements(_ name: String) -> Int? { shapes.type(of: name)?.elementCountAtUnitBatch }
    func input(_ i: Int) -> Int? { node.input(i).flatMap(elements) }
    var output: Int? { node.outputs.first.flatMap(elements) }
    func shape(_ name: String?) -> [Dim]? { name.flatMap { shapes.type(of: $0)?.shape } }
}

/// (MACs, FLOPs) of a node, or nil when a needed shape is unknown.
typealias CostRule = @Sendable (CostContext) -> (Int, Int)?

/// Cost rules keyed by ONNX op name; docs/cost-model.md states each convention.
enum CostRules {
    /// Input positions that hold trainable weights, per op.
    static func parameterSlots(of node: Node) -> [Int] {
        switch node.opType {
        case "Conv", "ConvTranspose", "PRelu": return [1, 2]
        case "BatchNormalization", "InstanceNormalization", "LayerNormalization", "GroupNormalization": return [1, 2]
        case "Gemm", "MatMul", "Add", "Sub", "Mul", "Div", "Sum": return Array(node.inputs.indices)
        case "Gather": return [0]
        default: return []
        }
    }

    /// Ops whose scalar constant operands are arithmetic, not parameters (`x / 6`).
    static let scalarOnlySlots: Set<String> = ["Add", "Sub", "Mul", "Div", "Sum"]

    /// Ops that move data and cost no arithmetic.
    static let movementOps = [
        "Reshape", "Flatten", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Split", "Slice", "Gather", "Pad",
        "Identity", "Dropout", "Cast", "CastLike", "Shape", "Size", "Constant", "ConstantOfShape", "Expand", "Tile", "Range",
    ]

    /// Element-wise ops: one FLOP per output element.
    static let elementwiseOps = ShapeRules.unaryOps.filter { !["Identity", "Softmax", "LogSoftmax", "Hardmax", "LRN", "InstanceNormalization", "LayerNormalization", "GroupNormalization", "LpNormalization", "MeanVarianceNormalization"].contains($0) }
        + ShapeRules.broadcastOps.filter { $0 != "Sum" && $0 != "Mean" } + ShapeRules.comparisonOps + ["Clip", "Where", "Resize", "Upsample"]

    static let table: [String: CostRule] = {
        var t: [String: CostRule] = [:]
        for op in movementOps { t[op] = { _ in (0, 0) } }
        for op in elementwiseOps { t[op] = { c in c.output.map { (0, $0) } } }
        t["Sum"] = { c in c.output.map { (0, $0 * max(c.node.inputs.count - 1, 1)) } }
        t["Mean"] = { c in c.output.map { (0, $0 * c.node.inputs.count) } }
        t["Conv"] = { c in
            guard let out = c.output, let w = c.shape(c.node.input(1))?.compactMap(\.value), w.count >= 3 else { return nil }
            let macs = out * w.dropFirst().reduce(1, *)  // (C_in / group) * prod(kernel) per output element
            return (macs, 2 * macs + (c.node.input(2) != nil ? out : 0))
        }
        t["ConvTranspose"] = { c in
            guard let inp = c.input(0), let out = c.output, let w = c.shape(c.node.input(1))?.compactMap(\.value), w.count >= 3 else { return nil }
            let macs = inp * w.dropFirst().reduce(1, *)  // each input element scatters (C_out / group) * prod(kernel)
            return (macs, 2 * macs + (c.node.input(2) != nil ? out : 0))
        }
        t["Gemm"] = { c in
            let transA = c.node.int("transA", default: 0) != 0
            guard let out = c.output, let a = c.shape(c.node.input(0)), a.count == 2 else { return nil }
            guard let k = (transA ? a[0] : a[1]).value else { return nil }
            return (out * k, 2 * out * k + (c.node.input(2) != nil ? out : 0))
        }
        t["MatMul"] = { c in
            guard let out = c.output, let a = c.shape(c.node.input(0)), let k = a.last?.value else { return nil }
            return (out * k, 2 * out * k)
        }
        for op in ["BatchNormalization", "InstanceNormalization"] { t[op] = { c in c.output.map { (0, 2 * $0) } } }
        t["LayerNormalization"] = { c in c.output.map { (0, 5 * $0) } }
        t["GroupNormalization"] = { c in c.output.map { (0, 5 * $0) } }
        for op in ["Softmax", "LogSoftmax"] { t[op] = { c in c.output.map { (0, 3 * $0) } } }
        t["Hardmax"] = { c in c.output.map { (0, $0) } }
        t["LRN"] = { c in c.output.map { (0, $0 * (c.node.int("size", default: 1) + 2)) } }
        for op in ["MaxPool", "AveragePool", "LpPool"] {
            t[op] = { c in
                guard let out = c.output, let k = c.node.ints("kernel_shape") else { return nil }
                return (0, out * k.reduce(1, *))
            }
        }
        for op in ["GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool", "ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin",
                   "ReduceProd", "ReduceL1", "ReduceL2", "ReduceSumSquare", "ReduceLogSum", "ReduceLogSumExp", "ArgMax", "ArgMin"] {
            t[op] = { c in c.input(0).map { (0, $0) } }
        }
        return t
    }()
}
