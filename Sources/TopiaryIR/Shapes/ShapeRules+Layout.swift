/// Ops that move, join, cut or reshape data without arithmetic.
extension ShapeRules {
    static let layoutRules: [String: ShapeRule] = [
        "Reshape": { ctx in
            let x = try ctx.shape(0)
            guard let target = ctx.inputs.count > 1 ? ctx.inputs[1]?.value : nil else {
                throw ShapeFailure("target shape '\(ctx.node.inputs.count > 1 ? ctx.node.inputs[1] : "")' is not known")
            }
            return [try ctx.same(try reshape(x, target, allowZero: ctx.node.int("allowzero", default: 0) != 0),
                                 value: ctx.inputs[0]?.value)]
        },
        "Flatten": { ctx in
            let x = try ctx.shape(0)
            let axis = try ShapeMath.axis(ctx.node.int("axis", default: 1), rank: x.count + 1)
            return [try ctx.same([ShapeMath.product(x[..<axis]), ShapeMath.product(x[axis...])])]
        },
        "Transpose": { ctx in
            let x = try ctx.shape(0)
            let perm = ctx.node.ints("perm") ?? Array((0..<x.count).reversed())
            guard perm.count == x.count, Set(perm) == Set(0..<x.count) else { throw ShapeFailure("perm \(perm) is not a permutation of rank \(x.count)") }
            return [try ctx.same(perm.map { x[$0] })]
        },
        "Squeeze": { ctx in
            let x = try ctx.shape(0)
            let out: [Dim]
            if let axes = try ctx.intsInputOrAttribute(1, "axes") {
                let norm = Set(try axes.map { try ShapeMath.axis($0, rank: x.count) })
                out = x.enumerated().filter { !norm.contains($0.offset) }.map(\.element)
            } else {
                guard x.allSatisfy({ $0.value != nil }) else { throw ShapeFailure("Squeeze without axes on a shape with unknown dims") }
                out = x.filter { $0 != .value(1) }
            }
            return [try ctx.same(out, value: ctx.inputs[0]?.value)]
        },
        "Unsqueeze": { ctx in
            let x = try ctx.shape(0)
            guard let axes = try ctx.intsInputOrAttribute(1, "axes") else { throw ShapeFailure("Unsqueeze without axes") }
            let rank = x.count + axes.count
            let norm = Set(try axes.map { try ShapeMath.axis($0, rank: rank) })
            var out: [Dim] = []
            var k = 0
            for i in 0..<rank {
                if norm.contains(i) { out.append(.value(1)) } else { out.append(x[k]); k += 1 }
            }
            return [try ctx.same(out, value: ctx.inputs[0]?.value)]
        },
        "Concat": { ctx in
            var shapes: [[Dim]] = []
            for i in ctx.inputs.indices where ctx.has(i) { shapes.append(try ctx.shape(i)) }
            guard let first = shapes.first else { throw ShapeFailure("Concat without inputs") }
            let axis = try ShapeMath.axis(ctx.node.int("axis", default: 0), rank: first.count)
            var out = first
            var total = 0
            var known = true
            for s in shapes {
                guard s.count == first.count else { throw ShapeFailure("Concat inputs differ in rank") }
                if let v = s[axis].value { total += v } else { known = false }
                for k in 0..<s.count where k != axis && out[k].value == nil && s[k].value != nil { out[k] = s[k] }
            }
            out[axis] = known ? .value(total) : .unknown
            var value: [Dim]? = []
            for i in ctx.inputs.indices where ctx.has(i) {
                if let v = ctx.inputs[i]?.value, first.count <= 1 { value?.append(contentsOf: v) } else { value = nil }
            }
            return [try ctx.same(out, value: value)]
        },
        "Split": { ctx in
            let x = try ctx.shape(0)
            let axis = try ShapeMath.axis(ctx.node.int("axis", default: 0), rank: x.count)
            let count = ctx.node.outputs.count
            var sizes = try ctx.intsInputOrAttribute(1, "split")
            if sizes == nil {
                guard let total = x[axis].value else { throw ShapeFailure("split axis size unknown") }
                let parts = ctx.node.int("num_outputs", default: count)
                let chunk = (total + parts - 1) / parts
                sizes = (0..<parts).map { min(chunk, max(0, total - $0 * chunk)) }
            }
            guard let sizes, sizes.count == count else { throw ShapeFailure("split sizes do not match the \(count) outputs") }
            return try sizes.map { s in
                var out = x
                out[axis] = .value(s)
                return try ctx.same(out)
            }
        },
        "Slice": { ctx in
            let x = try ctx.shape(0)
            let legacy = ctx.opset < 10
            guard let starts = legacy ? ctx.node.ints("starts") : ctx.ints(1),
                  let ends = legacy ? ctx.node.ints("ends") : ctx.ints(2) else { throw ShapeFailure("starts or ends not known") }
            let axes = (legacy ? ctx.node.ints("axes") : ctx.has(3) ? ctx.ints(3) : nil) ?? Array(0..<starts.count)
            let steps = (legacy ? nil : ctx.has(4) ? ctx.ints(4) : nil) ?? Array(repeating: 1, count: starts.count)
            guard ends.count == starts.count, axes.count == starts.count, steps.count == starts.count else { throw ShapeFailure("slice parameters differ in length") }
            var out = x
            var value = ctx.inputs[0]?.value
            for k in 0..<starts.count {
                let a = try ShapeMath.axis(axes[k], rank: x.count)
                guard steps[k] != 0 else { throw ShapeFailure("slice step 0") }
                guard let dim = x[a].value else { out[a] = .unknown; value = nil; continue }
                let range = sliceRange(dim: dim, start: starts[k], end: ends[k], step: steps[k])
                out[a] = .value(range.count)
                if let v = value, x.count == 1 { value = range.map { v[$0] } } else { value = nil }
            }
            return [try ctx.same(out, value: value)]
        },
        "Pad": { ctx in
            let x = try ctx.shape(0)
            guard let pads = try ctx.intsInputOrAttribute(1, "pads") ?? (ctx.opset < 11 ? ctx.node.ints("paddings") : nil) else {
                throw ShapeFailure("pads not known")
            }
            let axes = try (ctx.has(3) ? ctx.ints(3) : nil).map { try $0.map { try ShapeMath.axis($0, rank: x.count) } } ?? Array(0..<x.count)
            guard pads.count == 2 * axes.count else { throw ShapeFailure("pads has \(pads.count) entries for \(axes.count) axes") }
            var out = x
            for (k, a) in axes.enumerated() {
                out[a] = x[a].value.map { .value($0 + pads[k] + pads[k + axes.count]) } ?? .unknown
            }
            return [try ctx.same(out)]
        },
        "Resize": resizeRule,
        "Upsample": resizeRule,
        "Gather": { ctx in
            let x = try ctx.shape(0), idx = try ctx.shape(1)
            let axis = try ShapeMath.axis(ctx.node.int("axis", default: 0), rank: x.count)
            let out = Array(x[..<axis]) + idx + Array(x[(axis + 1)...])
            var value: [Dim]?
            if x.count == 1, let data = ctx.inputs[0]?.value, let indices = ctx.ints(1) {
                value = indices.map { i in
                    let j = i < 0 ? i + data.count : i
                    return j >= 0 && j < data.count ? data[j] : .unknown
                }
            }
            return [try ctx.same(out, value: value)]
        },
        "Expand": { ctx in
            let x = try ctx.shape(0)
            guard let target = ctx.inputs.count > 1 ? ctx.inputs[1]?.value : nil else { throw ShapeFailure("expand shape not known") }
            return [try ctx.same(ShapeMath.broadcast([x, target]))]
        },
        "Tile": { ctx in
            let x = try ctx.shape(0)
            guard let reps = ctx.ints(1), reps.count == x.count else { throw ShapeFailure("repeats not known") }
            return [try ctx.same(zip(x, reps).map { d, r in d.value.map { .value($0 * r) } ?? .unknown })]
        },
        "Where": { ctx in
            let shape = ShapeMath.broadcast([try ctx.shape(0), try ctx.shape(1), try ctx.shape(2)])
            return [ValueFacts(type: TensorType(try ctx.type(1).elemType, shape))]
        },
    ]

    static let resizeRule: ShapeRule = { ctx in
        let x = try ctx.shape(0)
        // Resize-10 and Upsample-9: (X, scales); Resize-11+: (X, roi, scales, sizes); Upsample-7: attribute.
        let scalesIndex = ctx.node.opType == "Upsample" || ctx.opset < 11 ? 1 : 2
        if ctx.node.opType == "Resize", ctx.opset >= 11, ctx.has(3) {
            guard let sizes = ctx.ints(3) else { throw ShapeFailure("sizes not known") }
            guard sizes.count == x.count else { throw ShapeFailure("sizes has \(sizes.count) entries for rank \(x.count)") }
            return [try ctx.same(sizes.map { .value($0) })]
        }
        var scales: [Float]?
        if ctx.has(scalesIndex) {
            scales = ctx.inputs[scalesIndex]?.floats
        } else {
            scales = ctx.node.attribute("scales")?.floats
        }
        guard let scales, scales.count == x.count else { throw ShapeFailure("scales not known") }
        return [try ctx.same(zip(x, scales).map { d, s in d.value.map { .value(Int((Float($0) * s).rounded(.down))) } ?? (s == 1 ? d : .unknown) })]
    }

    /// Indices a Slice selects along an axis of length `dim`.
    static func sliceRange(dim: Int, start: Int, end: Int, step: Int) -> [Int] {
        func clamp(_ v: Int, _ lo: Int, _ hi: Int) -> Int { min(max(v, lo), hi) }
        var s = start < 0 ? start + dim : start
        var e = end < 0 ? end + dim : end
        if step > 0 {
            s = clamp(s, 0, dim)
            e = clamp(e, 0, dim)
            return Array(stride(from: s, to: e, by: step))
        } else {
            s = clamp(s, 0, dim - 1)
            e = clamp(e, -1, dim - 1)
            return Array(stride(from: s, to: e, by: step))
        }
    }

    /// Output shape of Reshape with a target that may contain 0 (copy) and -1 (infer).
    static func reshape(_ x: [Dim], _ target: [Dim], allowZero: Bool) throws -> [Dim] {
        var out = target
        for (i, d) in target.enumerated() where d == .value(0) && !allowZero {
            guard i < x.count else { throw ShapeFailure("0 in the target shape at \(i) has no input dim to copy") }
            out[i] = x[i]
        }
        let inferred = out.indices.filter { out[$0] == .value(-1) }
        guard inferred.count <= 1 else { throw ShapeFailure("more than one -1 in the target shape") }
        guard let slot = inferred.first else {
            let a = x.compactMap(\.value), b = out.compactMap(\.value)
            if a.count == x.count, b.count == out.count, a.reduce(1, *) != b.reduce(1, *) {
                throw ShapeFailure("cannot reshape \(x) (\(a.reduce(1, *)) elements) to \(out)")
            }
            return out
        }
        // Cancel what input and output have in common: numbers multiply, symbols must match.
        var inKnown = 1, outKnown = 1
        var inSymbols: [Dim] = [], outSymbols: [Dim] = []
        for d in x { if let v = d.value { inKnown *= v } else { inSymbols.append(d) } }
        for (i, d) in out.enumerated() where i != slot {
            if let v = d.value { outKnown *= v } else { outSymbols.append(d) }
        }
        for s in outSymbols {
            guard case .param = s, let k = inSymbols.firstIndex(of: s) else { out[slot] = .unknown; return out }
            inSymbols.remove(at: k)
        }
        if inSymbols.isEmpty, outKnown > 0, inKnown % outKnown == 0 {
            out[slot] = .value(inKnown / outKnown)
        } else if inSymbols.count == 1, case .param = inSymbols[0], inKnown == outKnown {
            out[slot] = inSymbols[0]
        } else {
            out[slot] = .unknown
        }
        return out
    }
}

