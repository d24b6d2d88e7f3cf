/// Ops that make or convert values: constants, shapes, casts, reductions.
extension ShapeRules {
    static let valueRules: [String: ShapeRule] = [
        "Constant": { ctx in
            guard let t = ConstantValue.tensor(of: ctx.node) else { throw ShapeFailure("Constant with a sparse or missing value") }
            return [ShapeInference.facts(of: t)]
        },
        "Shape": { ctx in
            let x = try ctx.shape(0)
            let r = x.count
            func clampAxis(_ a: Int) -> Int { min(max(a < 0 ? a + r : a, 0), r) }
            let start = clampAxis(ctx.node.int("start", default: 0))
            let end = clampAxis(ctx.node.int("end", default: r))
            let dims = start < end ? Array(x[start..<end]) : []
            return [ValueFacts(type: TensorType(.int64, [.value(dims.count)]), value: dims)]
        },
        "Size": { ctx in
            let x = try ctx.shape(0)
            return [ValueFacts(type: TensorType(.int64, []), value: [ShapeMath.product(x[...])])]
        },
        "Cast": { ctx in
            guard let to = DataType(rawValue: Int32(ctx.node.int("to", default: 0))), to != .undefined else { throw ShapeFailure("Cast without a valid 'to'") }
            let x = try ctx.type(0)
            return [ValueFacts(type: TensorType(to, x.shape), value: to.isInteger ? ctx.inputs[0]?.value : nil)]
        },
        "CastLike": { ctx in
            let x = try ctx.type(0), like = try ctx.type(1)
            return [ValueFacts(type: TensorType(like.elemType, x.shape), value: like.elemType.isInteger ? ctx.inputs[0]?.value : nil)]
        },
        "ConstantOfShape": { ctx in
            guard let dims = ctx.ints(0) else { throw ShapeFailure("shape input not known") }
            let elem = ctx.node.attribute("value")?.tensor?.dataType ?? .float
            var value: [Dim]?
            if elem.isInteger, dims.count <= 1, let fill = ctx.node.attribute("value")?.tensor?.int64Values()?.first, (dims.first ?? 1) <= ShapeInference.valueLimit {
                value = Array(repeating: .value(Int(fill)), count: dims.first ?? 1)
            }
            return [ValueFacts(type: TensorType(elem, dims.map { .value($0) }), value: value)]
        },
        "Range": { ctx in
            let elem = try ctx.type(0).elemType
            guard let s = ctx.ints(0)?.first, let l = ctx.ints(1)?.first, let d = ctx.ints(2)?.first, d != 0 else {
                return [ValueFacts(type: TensorType(elem, [.unknown]))]
            }
            let n = max(0, Int((Double(l - s) / Double(d)).rounded(.up)))
            return [ValueFacts(type: TensorType(elem, [.value(n)]))]
        },
        "Dropout": { ctx in
            let x = try ctx.shape(0)
            return [try ctx.same(x), ValueFacts(type: TensorType(.bool, x))]
        },
        "Clip": sameAsInput,
    ]

    static let reductionRules: [String: ShapeRule] = {
        var t: [String: ShapeRule] = [:]
        for op in ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
                   "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"] {
            t[op] = { ctx in
                let x = try ctx.shape(0)
                let axes = try ctx.intsInputOrAttribute(1, "axes")
                let keep = ctx.node.int("keepdims", default: 1) != 0
                let reduced: Set<Int>
                if let axes, !axes.isEmpty {
                    reduced = Set(try axes.map { try ShapeMath.axis($0, rank: x.count) })
                } else if ctx.node.int("noop_with_empty_axes", default: 0) != 0 {
                    return [try ctx.same(x)]
                } else {
                    reduced = Set(0..<x.count)
                }
                let out: [Dim] = x.enumerated().compactMap { i, d in reduced.contains(i) ? (keep ? .value(1) : nil) : d }
                return [try ctx.same(out)]
            }
        }
        for op in ["ArgMax", "ArgMin"] {
            t[op] = { ctx in
                let x = try ctx.shape(0)
                let axis = try ShapeMath.axis(ctx.node.int("axis", default: 0), rank: x.count)
                var out = x
                if ctx.node.int("keepdims", default: 1) != 0 { out[axis] = .value(1) } else { out.remove(at: axis) }
                return [ValueFacts(type: TensorType(.int64, out))]
            }
        }
        return t
    }()
}
