import Foundation

/// Folds each inference-mode `BatchNormalization` that directly follows a `Conv` into the
/// convolution's weight and bias: W' = W·s, b' = (b − mean)·s + β with s = γ/√(var + ε), per output
/// channel. Only folds when the Conv output feeds nothing else and every tensor is a float32 constant.
public enum FoldBatchNorm {
    /// Returns how many BatchNormalization nodes were folded.
    @discardableResult
    public static func run(_ model: Model) throws -> Int {
        let graph = model.graph
        var folded = 0
        var constants = graph.constants()
        var index = GraphIndex(graph)
        var removed = Set<Int>()
        for (bi, bn) in graph.nodes.enumerated() where bn.opType == "BatchNormalization" && bn.isDefaultDomain {
            guard bn.int("training_mode", default: 0) == 0, bn.outputs.dropFirst().allSatisfy({ $0.isEmpty || index.consumers[$0] == nil }),
                  let x = bn.input(0), let ci = index.producer[x], !removed.contains(ci) else { continue }
            let conv = graph.nodes[ci]
            guard conv.opType == "Conv", conv.isDefaultDomain, index.consumers[x]?.count == 1, !index.graphOutputs.contains(x),
                  let wName = conv.input(1), let w = constants[wName], w.dataType == .float, w.dims.count >= 3,
                  let gamma = floats(bn.input(1), constants), let beta = floats(bn.input(2), constants),
                  let mean = floats(bn.input(3), constants), let variance = floats(bn.input(4), constants),
                  let wValues = w.floatValues() else { continue }
            let cout = w.dims[0]
            guard gamma.count == cout, beta.count == cout, mean.count == cout, variance.count == cout else { continue }
            var bias = [Float](repeating: 0, count: cout)
            if let bName = conv.input(2) {
                guard let b = floats(bName, constants), b.count == cout else { continue }
                bias = b
            }
            let eps = Double(bn.float("epsilon", default: 1e-5))
            let per = wValues.count / cout
            var newW = wValues
            var newB = bias
            for c in 0..<cout {
                let s = Double(gamma[c]) / (Double(variance[c]) + eps).squareRoot()
                for k in 0..<per { newW[c * per + k] = Float(Double(wValues[c * per + k]) * s) }
                newB[c] = Float((Double(bias[c]) - Double(mean[c])) * s + Double(beta[c]))
            }
            let base = conv.name.isEmpty ? wName : conv.name
            var names = UniqueNames(graph)
            let wOut = names.make(base + ".weight_bnfolded")
            let bOut = names.make(base + ".bias_bnfolded")
            graph.initializers.append(Tensor(name: wOut, floats: newW, dims: w.dims))
            graph.initializers.append(Tensor(name: bOut, floats: newB, dims: [cout]))
            constants[wOut] = graph.initializers[graph.initializers.count - 2]
            constants[bOut] = graph.initializers[graph.initializers.count - 1]
            var newConv = conv
            newConv.inputs = [conv.inputs[0], wOut, bOut]
            newConv.outputs[0] = bn.outputs[0]
            graph.nodes[ci] = newConv
            removed.insert(bi)
            folded += 1
            index = GraphIndex(graph)
        }
        graph.nodes = graph.nodes.enumerated().filter { !removed.contains($0.offset) }.map(\.element)
        if folded > 0 {
            let kept = Set(graph.nodes.flatMap(\.outputs))
            let inputNames = Set(graph.inputs.map(\.name))
            graph.valueInfo.removeAll { !kept.contains($0.name) && !inputNames.contains($0.name) }
            graph.removeDeadCode()
        }
        return folded
    }

    private static func floats(_ name: String?, _ constants: [String: Tensor]) -> [Float]? {
        guard let name, let t = constants[name], t.dataType.isFloatingPoint else { return nil }
        return t.floatValues()
    }
}

extension Graph {
    /// Drops nodes whose outputs nothing reads (default-domain ops only; they have no side
    /// effects), then initializers nothing reads, with their entries among the graph inputs (older
    /// exporters list initializers as inputs too).
    public func removeDeadCode() {
        var used = Set<String>(minimumCapacity: nodes.count * 3 + outputs.count)
        while true {
            used.removeAll(keepingCapacity: true)
            for o in outputs { used.insert(o.name) }
            for i in nodes.indices {
                for name in nodes[i].inputs { used.insert(name) }
                if nodes[i].hasSubgraphs { used.formUnion(nodes[i].capturedNames()) }
            }
            let before = nodes.count
            nodes.removeAll { $0.isDefaultDomain && !$0.outputs.contains(where: used.contains) }
            if nodes.count == before { break }
        }
        var dead = Set<String>()
        for t in initializers where !used.contains(t.name) { dead.insert(t.name) }
        if dead.isEmpty { return }
        initializers.removeAll { dead.contains($0.name) }
        inputs.removeAll { dead.contains($0.name) }
    }
}

/// Value names not yet used in a graph, made one after another: the graph's names are read once.
public struct UniqueNames {
    private var taken: Set<String>

    public init(_ graph: Graph) {
        taken = Set(graph.initializers.map(\.name) + graph.nodes.flatMap(\.outputs) + graph.inputs.map(\.name))
    }

    /// `base`, or `base_1`, `base_2` … when taken; the name returned counts as taken from then on.
    public mutating func make(_ base: String) -> String {
        var name = base
        var i = 1
        while taken.contains(name) {
            name = "\(base)_\(i)"
            i += 1
        }
        taken.insert(name)
        return name
    }
}
