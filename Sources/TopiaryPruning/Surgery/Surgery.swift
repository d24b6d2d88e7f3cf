import Foundation
import TopiaryIR

/// Removes channel classes from a model for real: slices every member tensor, rewrites the
/// attributes and shape constants that count channels, drops stale value_info, and checks the
/// result (validation and shape inference) before handing it back.
enum Surgery {
    /// Returns the shapes of the pruned model.
    @discardableResult
    static func apply(_ analysis: DependencyAnalysis, removing removed: Set<Int>) throws -> ShapeTable {
        let model = analysis.model
        let graph = model.graph
        var removedMask = [Bool](repeating: false, count: analysis.classes.count)
        for c in removed { removedMask[c] = true }
        func isKept(_ atom: Int) -> Bool { !removedMask[analysis.atomClass[atom]] }
        func keptPositions(_ atoms: [Int]) -> [Int] { atoms.indices.filter { isKept(atoms[$0]) } }
        func keptCount(_ atoms: [Int]) -> Int { atoms.reduce(0) { $0 + (isKept($1) ? 1 : 0) } }

        // 1. Slice member tensors along their axes.
        var cuts: [String: [Int: [Int]]] = [:]
        for m in analysis.members { cuts[m.tensor, default: [:]][m.axis] = keptPositions(m.atoms) }
        // Tensors are sliced in parallel: the copies are independent and memory-bound.
        let jobs = try cuts.map { name, axes -> (Tensor, [Int: [Int]]) in
            let t = try analysis.graph.constant(name)
            return (t, axes.filter { $0.value.count != t.dims[$0.key] })
        }.sorted { $0.0.buffer.count > $1.0.buffer.count }
        let results = SliceResults(count: jobs.count)
        DispatchQueue.concurrentPerform(iterations: jobs.count) { i in
            let (t, changed) = jobs[i]
            results.set(i, Result { changed.isEmpty ? t : try slice(t, keep: changed) })
        }
        var replacements: [String: Tensor] = [:]
        for i in jobs.indices { replacements[jobs[i].0.name] = try results.get(i) }
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
        return table
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
        try slice(t, keep: [axis: keep])
    }

    /// The tensor with only the given positions along each cut axis, in one pass: an odometer over
    /// the axes up to the last cut one, copying the contiguous run of the axes after it.
    static func slice(_ t: Tensor, keep cuts: [Int: [Int]]) throws -> Tensor {
        guard t.dataType != .string, t.dataType.bitWidth >= 8 else { throw Barrier("cannot slice a \(t.dataType) tensor") }
        guard let last = cuts.keys.max() else { return t }
        let width = t.dataType.bitWidth / 8
        let dims = t.dims
        let run = dims[(last + 1)...].reduce(1, *) * width
        // Source positions along each axis up to `last`, and the byte stride of each.
        let picks: [[Int]] = (0...last).map { cuts[$0] ?? Array(0..<dims[$0]) }
        var strides = [Int](repeating: run, count: last + 1)
        for a in stride(from: last - 1, through: 0, by: -1) { strides[a] = strides[a + 1] * dims[a + 1] }
        var newDims = dims
        for (a, p) in picks.enumerated() { newDims[a] = p.count }
        let count = picks.reduce(1) { $0 * $1.count }
        let out = TensorBuffer(uninitializedCount: count * run)
        if count > 0 && run > 0 {
            let src = t.buffer.base, dst = out.base
            let inner = picks[last].map { $0 * strides[last] }
            var index = [Int](repeating: 0, count: last)
            var d = 0
            let words = run / 4
            while true {
                var base = 0
                for a in 0..<last { base += picks[a][index[a]] * strides[a] }
                if run == 4 {
                    let o = (dst + d).assumingMemoryBound(to: UInt32.self)
                    for (k, off) in inner.enumerated() { o[k] = (src + base + off).assumingMemoryBound(to: UInt32.self).pointee }
                    d += 4 * inner.count
                } else if run % 4 == 0 && run <= 256 {
                    for off in inner {
                        let s = (src + base + off).assumingMemoryBound(to: UInt32.self), o = (dst + d).assumingMemoryBound(to: UInt32.self)
                        for i in 0..<words { o[i] = s[i] }
                        d += run
                    }
                } else {
                    for off in inner {
                        (dst + d).copyMemory(from: src + base + off, byteCount: run)
                        d += run
                    }
                }
                var a = last - 1
                while a >= 0 {
                    index[a] += 1
                    if index[a] < picks[a].count { break }
                    index[a] = 0
                    a -= 1
                }
                if a < 0 { break }
            }
        }
        var r = Tensor(name: t.name, dataType: t.dataType, dims: newDims, buffer: out)
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

/// Results of parallel slicing, each slot written by exactly one iteration.
final class SliceResults: @unchecked Sendable {
    private var slots: [Result<Tensor, Error>?]
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    func set(_ i: Int, _ r: Result<Tensor, Error>) {
        lock.lock()
        slots[i] = r
        lock.unlock()
    }

    func get(_ i: Int) throws -> Tensor {
        guard let r = slots[i] else { throw Barrier("a slice was not computed") }
        return try r.get()
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
