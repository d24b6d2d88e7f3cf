/// Replaces each `Identity` whose input is an initializer with an initializer of its own, named
/// after the Identity's output. Exporters write equal tensors once and hand the copies out
/// through Identity nodes (PyTorch does for equal BatchNormalization biases, for instance); to
/// a pass that slices weights, or to training, each copy is a weight of its own. Graph outputs
/// stay Identity nodes. Same results; returns how many copies were made.
public enum UntieWeightCopies {
    @discardableResult
    public static func run(_ model: Model) -> Int {
        let graph = model.graph
        guard graph.nodes.contains(where: { $0.opType == "Identity" }) else { return 0 }
        let outputs = Set(graph.outputs.map(\.name))
        let weights = graph.initializerIndex()
        var copies: [Tensor] = []
        graph.nodes.removeAll { node in
            guard node.opType == "Identity", let i = node.input(0), let o = node.outputs.first, !outputs.contains(o),
                  let w = weights[i] else { return false }
            var t = graph.initializers[w]
            t.name = o
            copies.append(t)
            return true
        }
        graph.initializers.append(contentsOf: copies)
        return copies.count
    }
}
