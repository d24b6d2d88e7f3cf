import Foundation
import TopiaryIR

/// Removes channel classes from a model for real: slices every member tensor, rewrites the
/// attributes and shape constants that count channels, drops stale value_info, and checks the
/// result (validation and shape inference) before handing it back.
enum Surgery {
    /// Slices every member, then rewrites the graph while large weights are still being moved:
    /// call `finish` on the outcome before anything reads the weights.
    static func apply(_ analysis: DependencyAnalysis, removing removed: Set<Int>, backgroundBytes: Int = backgroundBytes) throws -> Outcome {
        let model = analysis.model
        let graph = model.graph
        var removedMask = [Bool](repeating: false, count: analysis.classes.count)
        for c in removed { removedMask[c] = true }
        let keptAtom = analysis.atomClass.map { !removedMask[$0] }
        // Members made from one layout share its atom array (a convolution's filters, the
        // BatchNormalization after it, the next convolution's inputs): positions are found once
        // per array, keyed by its storage.
        var positionsByStorage: [UInt: [Int]] = [:]
        func keptPositions(_ atoms: [Int]) -> [Int] {
            atoms.withUnsafeBufferPointer { atoms in
                let key = UInt(bitPattern: atoms.baseAddress)
                if let known = positionsByStorage[key] { return known }
                let out = keptAtom.withUnsafeBufferPointer { kept in
                    var out: [Int] = []
                    out.reserveCapacity(atoms.count)
                    for i in atoms.indices where kept[atoms[i]] { out.append(i) }
                    return out
                }
                positionsByStorage[key] = out
                return out
            }
        }

        // 1. Slice member tensors along their axes. A weight that nothing else holds is compacted
        // in place (kept slices only ever move towards the start) and its tail pages given back:
        // no new memory to fault in, and no second copy at peak. A shared one is copied.
        let members = analysis.members
        var membersOf: [String: [Int]] = [:]
        membersOf.reserveCapacity(members.count)
        for k in members.indices { membersOf[members[k].tensor, default: []].append(k) }
        // Kept positions along each axis of `t` that loses channels (members of one tensor on
        // one axis are tied, so any of them gives the positions).
        func changed(_ t: Tensor) -> [Int: [Int]] {
            var axes: [Int: [Int]] = [:]
            for k in membersOf[t.name] ?? [] where axes[members[k].axis] == nil {
                let positions = keptPositions(members[k].atoms)
                if positions.count != t.dims[members[k].axis] { axes[members[k].axis] = positions }
            }
            return axes
        }
        for i in graph.nodes.indices where graph.nodes[i].opType == "Constant" {
            guard let out = graph.nodes[i].outputs.first, membersOf[out] != nil else { continue }
            var t = try analysis.graph.constant(out)
            let axes = changed(t)
            if axes.isEmpty { continue }
            t = try slice(t, keep: axes)
            t.name = ""
            graph.nodes[i].attributes = [Attribute(name: "value", value: .tensor(t))]
        }
        analysis.graph.forgetConstants(membersOf.keys)
        var tensors = graph.initializers
        graph.initializers = []
        var jobs: [(index: Int, axes: [Int: [Int]], inPlace: Bool)] = []
        for i in tensors.indices where membersOf[tensors[i].name] != nil {
            let axes = changed(tensors[i])
            if !axes.isEmpty { jobs.append((i, axes, tensors[i].hasUniqueBuffer())) }
        }
        jobs.sort { tensors[$0.index].buffer.count > tensors[$1.index].buffer.count }
        // Large weights nothing else holds take their new shape now and have their bytes moved
        // on a background thread while the graph is rewritten and checked (`Outcome.finish`
        // waits for them: moving weights is memory-bound, the graph work is not); the rest are
        // sliced here across the cores.
        var plans: [SlicePlan?] = []
        do {
            plans = try jobs.map { $0.inPlace && tensors[$0.index].buffer.count >= backgroundBytes ? try SlicePlan(tensors[$0.index], keep: $0.axes) : nil }
        } catch {
            graph.initializers = tensors
            throw error
        }
        var moves: [@Sendable () -> Void] = []
        for (job, plan) in zip(jobs, plans) {
            guard let plan else { continue }
            let buffer = tensors[job.index].buffer
            tensors[job.index].dims = plan.dims
            buffer.truncate(to: plan.byteCount)
            moves.append { plan.copy(from: buffer.base, to: buffer.base) }
        }
        let pending = PendingMoves(jobs: BackgroundJobs(moves), shrunk: jobs.filter(\.inPlace).map { tensors[$0.index].buffer })
        let now = zip(jobs, plans).filter { $0.1 == nil }.map(\.0)
        let failure: Error? = tensors.withUnsafeMutableBufferPointer { buffer in
            nonisolated(unsafe) let slots = buffer
            do {
                _ = try parallelMap(now) { job in
                    if job.inPlace {
                        try sliceInPlace(&slots[job.index], keep: job.axes)
                    } else {
                        slots[job.index] = try slice(slots[job.index], keep: job.axes)
                    }
                }
                return nil
            } catch {
                return error
            }
        }
        graph.initializers = tensors
        if let failure {
            pending.finish()
            throw failure
        }
        do {
            return Outcome(shapes: try rewrite(analysis, keptAtom: keptAtom), pending: pending)
        } catch {
            pending.finish()
            throw error
        }
    }

    /// Weights at least this large are moved in the background.
    static let backgroundBytes = 256 << 10

    /// Weight moves possibly still running, and the buffers cut in place, whose tail pages go
    /// back to the system once moved.
    struct PendingMoves {
        let jobs: BackgroundJobs
        let shrunk: [TensorBuffer]

        /// Waits until every weight holds its kept elements, then releases the freed pages.
        func finish() {
            jobs.finish()
            TensorBuffer.releaseUnusedPages(of: shrunk)
        }
    }

    /// What surgery produced: the pruned model's shapes, and its pending weight moves.
    struct Outcome {
        let shapes: ShapeTable
        let pending: PendingMoves

        func finish() { pending.finish() }
    }

    /// Steps 2 and 3 of `apply`: attributes, shape constants, annotations, checks.
    private static func rewrite(_ analysis: DependencyAnalysis, keptAtom: [Bool]) throws -> ShapeTable {
        let model = analysis.model
        let graph = model.graph
        func isKept(_ atom: Int) -> Bool { keptAtom[atom] }
        func keptCount(_ atoms: [Int]) -> Int { atoms.reduce(0) { $0 + (isKept($1) ? 1 : 0) } }

        // 2. Attributes and shape constants that count channels.
        var names = UniqueNames(graph)
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
                    let name = names.make(node.label + ".split_pruned")
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
                        let name = names.make(node.label + (slot == 1 ? ".starts_pruned" : ".ends_pruned"))
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
                let name = names.make(node.label + ".shape_pruned")
                graph.initializers.append(Tensor(name: name, int64s: target, dims: [target.count]))
                node.inputs[1] = name
                graph.nodes[n] = node
            }
        }

        // 3. Stale annotations and dead constants.
        let changed = Set(analysis.graph.layouts.keys)
        graph.valueInfo.removeAll { changed.contains($0.name) }
        graph.removeDeadCode()
        try ModelValidator.validate(model, cycles: false)  // shape inference next finds any cycle
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

    /// The tensor with only the given positions along each cut axis, in new memory.
    static func slice(_ t: Tensor, keep cuts: [Int: [Int]]) throws -> Tensor {
        let plan = try SlicePlan(t, keep: cuts)
        let out = TensorBuffer(uninitializedCount: plan.byteCount)
        plan.copy(from: t.buffer.base, to: out.base)
        var r = Tensor(name: t.name, dataType: t.dataType, dims: plan.dims, buffer: out)
        r.docString = t.docString
        r.encoding = t.encoding
        return r
    }

    /// Slices `t` in its own buffer, which nothing else may hold (`Tensor.hasUniqueBuffer`).
    static func sliceInPlace(_ t: inout Tensor, keep cuts: [Int: [Int]]) throws {
        let plan = try SlicePlan(t, keep: cuts)
        plan.copy(from: t.buffer.base, to: t.buffer.base)
        t.buffer.truncate(to: plan.byteCount)
        t.dims = plan.dims
    }
}

/// How to gather the kept positions of a tensor along its cut axes: an odometer over the axes up
/// to the last cut one, copying the contiguous run of the axes after it. Every run lands at or
/// before where it is read from, so source and destination may be the same buffer.
struct SlicePlan {
    let dims: [Int]
    let byteCount: Int
    private let run: Int
    private let picks: [[Int]]
    private let strides: [Int]

    init(_ t: Tensor, keep cuts: [Int: [Int]]) throws {
        guard t.dataType != .string, t.dataType.bitWidth >= 8 else { throw Barrier("cannot slice a \(t.dataType) tensor") }
        let width = t.dataType.bitWidth / 8
        let last = cuts.keys.max() ?? -1
        var dims = t.dims
        for (a, keep) in cuts { dims[a] = keep.count }
        run = t.dims[(last + 1)...].reduce(1, *) * width
        picks = (0..<(last + 1)).map { cuts[$0] ?? Array(0..<t.dims[$0]) }
        var strides = [Int](repeating: run, count: last + 1)
        for a in stride(from: last - 1, through: 0, by: -1) { strides[a] = strides[a + 1] * t.dims[a + 1] }
        self.strides = strides
        self.dims = dims
        byteCount = dims.reduce(1, *) * width
    }

    func copy(from src: UnsafeMutableRawPointer, to dst: UnsafeMutableRawPointer) {
        guard let last = picks.indices.last else {
            if src != dst { dst.copyMemory(from: src, byteCount: byteCount) }
            return
        }
        if byteCount == 0 || run == 0 { return }
        let inner = picks[last].map { $0 * strides[last] }
        var index = [Int](repeating: 0, count: last)
        var d = 0
        let words = run / 4
        while true {
            var base = 0
            for a in 0..<last { base += picks[a][index[a]] * strides[a] }
            if run == 4 {
                let o = (dst + d).assumingMemoryBound(to: UInt32.self), s = src + base
                inner.withUnsafeBufferPointer { offsets in
                    for k in offsets.indices { o[k] = s.load(fromByteOffset: offsets[k], as: UInt32.self) }
                }
                d += 4 * inner.count
            } else if run % 4 == 0 && run <= 256 {
                for off in inner {
                    let s = (src + base + off).assumingMemoryBound(to: UInt32.self), o = (dst + d).assumingMemoryBound(to: UInt32.self)
                    for i in 0..<words { o[i] = s[i] }  // forward, so safe when o <= s
                    d += run
                }
            } else {
                for off in inner {
                    if dst + d != src + base + off { memmove(dst + d, src + base + off, run) }
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
}

/// Zeroes removed channels without changing any shape: producing filters and biases,
/// BatchNormalization scale and shift, per-channel scales and shifts. Such a model must compute
/// what the pruned one computes: the exactness check of every pruning rule.
enum Masking {
    /// Zeroes the removed classes' slices of every producer, bias, normalisation scale and shift;
    /// returns them by tensor.
    @discardableResult
    static func apply(_ analysis: DependencyAnalysis, removing removed: Set<Int>) throws -> [String: [(axis: Int, positions: [Int])]] {
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
        return zero
    }
}
