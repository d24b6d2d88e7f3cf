/// Replaces computed shape parameters (Reshape targets, Slice bounds, Split sizes, Pad amounts,
/// Squeeze/Unsqueeze axes …) whose values shape inference knows with constant initializers, then
/// removes the shape arithmetic left unused. Reshape targets keep a symbolic batch as 0 (copy the
/// input's dimension). After this, a pass that changes channel counts can rewrite the constants.
public enum FreezeShapeInputs {
    /// Parameter input positions per op.
    static let parameterInputs: [String: [Int]] = [
        "Reshape": [1], "Slice": [1, 2, 3, 4], "Split": [1], "Pad": [1, 3], "Squeeze": [1], "Unsqueeze": [1],
        "Expand": [1], "Tile": [1], "ConstantOfShape": [0], "ReduceMean": [1], "ReduceSum": [1], "ReduceMax": [1],
        "ReduceMin": [1], "ReduceProd": [1], "ReduceL1": [1], "ReduceL2": [1], "ReduceSumSquare": [1],
    ]

    /// Returns how many inputs were frozen.
    @discardableResult
    public static func run(_ model: Model) throws -> Int {
        let graph = model.graph
        let constants = Set(graph.initializers.map(\.name))
        // Nothing computed feeds a shape parameter: nothing to freeze, no inference needed.
        let computed = graph.nodes.contains { node in
            node.isDefaultDomain && (parameterInputs[node.opType] ?? []).contains { $0 < node.inputs.count && !node.inputs[$0].isEmpty && !constants.contains(node.inputs[$0]) }
        }
        guard computed else { return 0 }
        let table = try ShapeInference.run(model)
        var frozen = 0
        var made: [String: String] = [:]
        var names = UniqueNames(graph)
        for i in graph.nodes.indices {
            let node = graph.nodes[i]
            guard node.isDefaultDomain, let slots = parameterInputs[node.opType] else { continue }
            for slot in slots where slot < node.inputs.count {
                let name = node.inputs[slot]
                guard !name.isEmpty, !constants.contains(name), let facts = table.facts[name],
                      let type = facts.type, type.elemType.isInteger, let value = facts.value else { continue }
                let copiesBatch = node.opType == "Reshape" && node.int("allowzero", default: 0) == 0
                let inputShape = node.input(0).flatMap { table.type(of: $0)?.shape } ?? []
                var ints: [Int64]? = []
                for (k, d) in value.enumerated() {
                    switch d {
                    case .value(let v): ints?.append(Int64(v))
                    // A symbolic dim copied from the same axis of the input stays dynamic as 0.
                    case .param where copiesBatch && k < inputShape.count && inputShape[k] == d: ints?.append(0)
                    default: ints = nil
                    }
                    if ints == nil { break }
                }
                guard let ints else { continue }
                let newName: String
                if let existing = made[name] {
                    newName = existing
                } else {
                    newName = names.make(name + "_frozen")
                    graph.initializers.append(Tensor(name: newName, int64s: ints, dims: type.shape?.count == 0 ? [] : [ints.count]))
                    made[name] = newName
                }
                graph.nodes[i].inputs[slot] = newName
                frozen += 1
            }
        }
        if frozen > 0 { graph.removeDeadCode() }
        return frozen
    }
}
