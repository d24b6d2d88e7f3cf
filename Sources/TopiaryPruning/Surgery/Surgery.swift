import TopiaryIR

/// Removes channel classes from a model for real: slices every member tensor, rewrites the
/// attributes and shape constants that count channels, drops stale value_info, and checks the
/// result (validation and shape inference) before handing it back.
enum Surgery {
    static func apply(_ analysis: DependencyAnalysis, removing removed: Set<Int>) throws {
        let model = analysis.model
        let graph = model.graph
        func isKept(_ atom: Int) -> Bool { !removed.contains(analysis.atomClass[atom]) }
        func keptPositions(_ atoms: [Int]) -> [Int] { atoms.indices.filter { isKept(atoms[$0]) } }
        func keptCount(_ atoms: [Int]) -> Int { atoms.reduce(0) { $0 + (isKept($1) ? 1 : 0) } }

        // 1. Slice member tensors along their axes.
        var cuts: [String: [Int: [Int]]] = [:]
        for m in analysis.members { cuts[m.tensor, default: [:]][m.axis] = keptPositions(m.atoms) }
        var replacements: [String: Tensor] = [:]
        for (name, axes) in cuts {
            var t = try analysis.graph.constant(name)
            for (axis, keep) in axes.sorted(by: { $0.key < $1.key }) where keep.count != t.dims[axis] {
                t = try slice(t, axis: axis, keep: keep)
            }
            replacements[name] = t
        }
        for i in graph.initializers.indices {
            if let t = replacements[graph.initializers[i].name] { graph.initializers[i] = t }
        }
        for i in graph.nodes.indices where graph.nodes[i].opType == "Constant" {
            if let out = graph.nodes[i].outputs.first, var t = replacements[out] {
                t.name = ""
                graph.nodes[i].attributes = [Attribute(name: "value", value: .tensor(t))]
            }
        }

        // 2. Attributes and shape constants that count channels.
        for update in analysis.graph.updates {
            switch update {
            case .depthwiseGroup(let n, let layout):
                graph.nodes[n].setAttribute("group", .int(Int64(keptCount(layout.atoms))))
            case .split(let n, let outputs):
                let sizes = outputs.map { Int64(keptCount($0.atoms)) }
                var node = graph.nodes[n]
                if model.defaultOpset < 13 {
                    node.setAttribute("split", .ints(sizes))
                } else {
                    node.attributes.removeAll { $0.name == "num_outputs" }
                    let name = uniqueValueName(node.label + ".split_pruned", graph)
                    graph.initializers.append(Tensor(name: name, int64s: sizes, dims: [sizes.count]))
                    if node.inputs.count > 1 { node.inputs[1] = name } else { node.inputs.append(name) }
                }
                graph.nodes[n] = node
            case .slice(let n, let input, let start, let end, let axis):
                let newStart = keptCount(Array(input.atoms[..<start])), newEnd = keptCount(Array(input.atoms[..<end]))
                var node = graph.nodes[n]
                let legacy = model.defaultOpset < 10
                let axes = (legacy ? node.ints("axes") : node.input(3).flatMap { analysis.graph.constants[$0]?.int64Values()?.map { Int($0) } })
                    ?? Array(0..<(legacy ? (node.ints("starts")?.count ?? 0) : (node.input(1).flatMap { analysis.graph.constants[$0]?.elementCount } ?? 0)))
                let rank = analysis.graph.dims(node.inputs[0])?.count ?? 0
                guard let k = axes.firstIndex(where: { ($0 < 0 ? $0 + rank : $0) == axis }) else { throw Barrier("slice axis vanished") }
                if legacy {
                    var s = node.ints("starts") ?? [], e = node.ints("ends") ?? []
                    s[k] = newStart
                    e[k] = newEnd
                    node.setAttribute("starts", .ints(s.map { Int64($0) }))
                    node.setAttribute("ends", .ints(e.map { Int64($0) }))
                } else {
                    for (slot, value) in [(1, newStart), (2, newEnd)] {
                        guard var v = node.input(slot).flatMap({ analysis.graph.constants[$0]?.int64Values() }) else { throw Barrier("slice bounds are not constant") }
                        v[k] = Int64(value)
                        let name = uniqueValueName(node.label + (slot == 1 ? ".starts_pruned" : ".ends_pruned"), graph)
                        graph.initializers.append(Tensor(name: name, int64s: v, dims: [v.count]))
                        node.inputs[slot] = name
                    }
                }
                graph.nodes[n] = node
            case .reshape(let n, let output):
                var node = graph.nodes[n]
                guard let targetName = node.input(1), var target = analysis.graph.constants[targetName]?.int64Values() else {
                    throw Barrier("reshape target is not constant")
                }
                let newSizes = keptSizes(output, isKept: isKept)
                for (axis, size) in zip(output.axes, newSizes) where axis < target.count && target[axis] > 0 {
                    target[axis] = Int64(size)
                }
                let name = uniqueValueName(node.label + ".shape_pruned", graph)
                graph.initializers.append(Tensor(name: name, int64s: target, dims: [target.count]))
                node.inputs[1] = name
                graph.nodes[n] = node
            }
        }

        // 3. Stale annotations and dead constants.
        let changed = Set(analysis.graph.layouts.keys)
        graph.valueInfo.removeAll { changed.contains($0.name) }
        graph.removeDeadCode()
        try ModelValidator.validate(model)
        let table = try ShapeInference.run(model)
        for output in graph.outputs {
            if let declared = output.type.tensorType?.shape, let inferred = table.type(of: output.name)?.shape,
               declared.count == inferred.count, zip(declared, inferred).contains(where: { $0.value != nil && $1.value != nil && $0 != $1 }) {
                throw Barrier("output '\(output.name)' changed shape from \(declared) to \(inferred)")
            }
        }
    }

    /// Kept size along each axis of a (possibly two-axis, rectangular) layout.
    static func keptSizes(_ l: ChannelLayout, isKept: (Int) -> Bool) -> [Int] {
        if l.axes.count == 1 { return [l.atoms.reduce(0) { $0 + (isKept($1) ? 1 : 0) }] }
        let (a, b) = (l.sizes[0], l.sizes[1])
        let rows = (0..<a).filter { i in (0..<b).contains { isKept(l.atoms[i * b + $0]) } }.count
        let cols = (0..<b).filter { j in (0..<a).contains { isKept(l.atoms[$0 * b + j]) } }.count
        return [rows, cols]
    }

    /// The tensor with only positions `keep` along `axis`.
    static func slice(_ t: Tensor, axis: Int, keep: [Int]) throws -> Tensor {
        guard t.dataType != .string, t.dataType.bitWidth >= 8 else { throw Barrier("cannot slice a \(t.dataType) tensor") }
        let width = t.dataType.bitWidth / 8
        let n = t.dims[axis]
        let inner = t.dims[(axis + 1)...].reduce(1, *) * width
        let outer = t.dims[..<axis].reduce(1, *)
        let out = TensorBuffer(zeroedCount: outer * keep.count * inner)
        let src = t.buffer.base, dst = out.base
        var d = 0
        for o in 0..<outer {
            for p in keep {
                (dst + d).copyMemory(from: src + (o * n + p) * inner, byteCount: inner)
                d += inner
            }
        }
        var dims = t.dims
        dims[axis] = keep.count
        var r = Tensor(name: t.name, dataType: t.dataType, dims: dims, buffer: out)
        r.docString = t.docString
        r.encoding = t.encoding
        return r
    }

    static func uniqueValueName(_ base: String, _ graph: Graph) -> String {
        let taken = Set(graph.initializers.map(\.name) + graph.nodes.flatMap(\.outputs) + graph.inputs.map(\.name))
        if !taken.contains(base) { return base }
        var i = 1
        while taken.contains("\(base)_\(i)") { i += 1 }
        return "\(base)_\(i)"
    }
}

/// Zeroes removed channels without changing any shape: producing filters and biases,
/// BatchNormalization scale and shift, per-channel scales and shifts. Such a model must compute
/// what the pruned one computes: the exactness check of every pruning rule.
enum Masking {
    static func apply(_ analysis: DependencyAnalysis, removing removed: Set<Int>) throws {
        let graph = analysis.model.graph
        let masked: Set<Member.Role> = [.producer, .producerBias, .bnScale, .shift, .scale]
        var zero: [String: [(axis: Int, positions: [Int])]] = [:]
        for m in analysis.members where masked.contains(m.role) {
            let positions = m.atoms.indices.filter { removed.contains(analysis.atomClass[m.atoms[$0]]) }
            if !positions.isEmpty { zero[m.tensor, default: []].append((m.axis, positions)) }
        }
        for i in graph.initializers.indices {
            guard let cuts = zero[graph.initializers[i].name] else { continue }
            var t = graph.initializers[i]
            guard t.dataType == .float, var values = t.floatValues() else { throw Barrier("masking supports float32 weights only") }
            for cut in cuts {
                let n = t.dims[cut.axis]
                let inner = t.dims[(cut.axis + 1)...].reduce(1, *)
                let outer = t.dims[..<cut.axis].reduce(1, *)
                for o in 0..<outer { for p in cut.positions { for k in 0..<inner { values[(o * n + p) * inner + k] = 0 } } }
            }
            t.replaceBuffer(TensorBuffer(copying: values))
            graph.initializers[i] = t
        }
    }
}
