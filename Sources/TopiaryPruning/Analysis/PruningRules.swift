import TopiaryIR

/// How channels flow through one op: a rule reads input layouts, ties atoms, records members and
/// sets output layouts, or throws a `Barrier`. One table keyed by ONNX op name.
typealias PruningRule = @Sendable (RuleContext) throws -> Void

enum PruningRules {
    static let table: [String: PruningRule] = {
        var t: [String: PruningRule] = [:]
        for op in passThroughOps { t[op] = passThrough }
        for op in ["Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "Mean", "Pow"] { t[op] = elementwise }
        t["BatchNormalization"] = batchNorm
        t["InstanceNormalization"] = instanceNorm
        t["PRelu"] = elementwise
        t["Conv"] = conv
        t["ConvTranspose"] = convTranspose
        t["Gemm"] = gemm
        t["MatMul"] = matMul
        t["Concat"] = concat
        t["Split"] = split
        t["Slice"] = slice
        t["Flatten"] = flatten
        t["Reshape"] = reshape
        t["Transpose"] = transpose
        t["Squeeze"] = squeezeOrUnsqueeze
        t["Unsqueeze"] = squeezeOrUnsqueeze
        for op in ["ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceL1", "ReduceL2", "ReduceProd", "ReduceSumSquare"] { t[op] = reduce }
        t["Pad"] = pad
        t["Resize"] = resize
        t["Softmax"] = softmax
        t["LogSoftmax"] = softmax
        t["Shape"] = { _ in }
        return t
    }()

    /// Ops that act on each channel separately and keep the layout.
    static let passThroughOps = [
        "Relu", "LeakyRelu", "Clip", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Elu", "Selu", "Celu", "Gelu", "Mish",
        "Softplus", "Softsign", "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Erf", "Floor", "Ceil", "Round", "Sign",
        "Identity", "Dropout", "Cast", "MaxPool", "AveragePool", "LpPool", "GlobalAveragePool", "GlobalMaxPool", "GlobalLpPool",
    ]

    static let passThrough: PruningRule = { ctx in
        // Clip's min/max inputs are scalars; only input 0 carries channels.
        ctx.setOutput(0, ctx.layout(0))
    }

    static let batchNorm: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let axis = l.axis, axis == 1 else { throw Barrier("channels are not on axis 1") }
        let roles: [Member.Role] = [.bnScale, .shift, .statistic, .statistic]
        for (k, role) in roles.enumerated() {
            if let name = ctx.node.input(k + 1) { try ctx.graph.addMember(name, axis: 0, atoms: l.atoms, role: role, node: ctx.label) }
        }
        ctx.setOutput(0, l)
    }

    static let instanceNorm: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard l.axis == 1 else { throw Barrier("channels are not on axis 1") }
        if let s = ctx.node.input(1) { try ctx.graph.addMember(s, axis: 0, atoms: l.atoms, role: .bnScale, node: ctx.label) }
        if let b = ctx.node.input(2) { try ctx.graph.addMember(b, axis: 0, atoms: l.atoms, role: .shift, node: ctx.label) }
        ctx.setOutput(0, l)
    }

    /// Broadcasting element-wise ops: inputs whose channels line up are tied; per-channel
    /// constants follow.
    static let elementwise: PruningRule = { ctx in
        guard let out = ctx.outputDims() else { throw Barrier("output shape unknown") }
        let rank = out.count
        var result: ChannelLayout?
        var constantInputs: [Int] = []
        var plainInputs: [[Int]] = []
        for i in ctx.node.inputs.indices where ctx.node.input(i) != nil {
            let name = ctx.node.inputs[i]
            if ctx.graph.isConstant(name) { constantInputs.append(i); continue }
            guard let d = ctx.graph.dims(name) else { throw Barrier("shape of '\(name)' unknown") }
            guard let l = ctx.graph.layouts[name] else { plainInputs.append(d); continue }
            let aligned = l.shifted(by: rank - d.count)
            if let r = result {
                guard r.axes == aligned.axes, r.sizes == aligned.sizes else { throw Barrier("inputs carry channels on different axes") }
                try ctx.graph.tie(r.atoms, aligned.atoms)
            } else {
                result = aligned
            }
        }
        guard let layout = result else { ctx.setOutput(0, nil); return }
        // An input without known channels may only broadcast (size 1) along the channel axes.
        for d in plainInputs {
            for a in layout.axes {
                let j = a - (rank - d.count)
                if j >= 0 && d[j] != 1 { throw Barrier("an input has no known channels") }
            }
        }
        guard let axis = layout.axis else {
            if !constantInputs.isEmpty { throw Barrier("constant operand with split channel axes") }
            ctx.setOutput(0, layout)
            return
        }
        for i in constantInputs {
            let name = ctx.node.inputs[i]
            let t = try ctx.graph.constant(name)
            let j = axis - (rank - t.dims.count)
            guard j >= 0, t.dims[j] != 1 else { continue }
            guard t.dims[j] == layout.atoms.count else { throw Barrier("constant '\(name)' does not match the channels") }
            let role: Member.Role
            switch ctx.node.opType {
            case "Add", "Sub", "Sum", "Max", "Min", "Mean": role = .shift
            case "Mul", "PRelu": role = .scale
            default: role = .divisor
            }
            try ctx.graph.addMember(name, axis: j, atoms: layout.atoms, role: role, node: ctx.label)
        }
        ctx.setOutput(0, layout)
    }

    static let conv: PruningRule = { ctx in
        guard let wName = ctx.node.input(1), let w = ctx.graph.constants[wName] else { throw Barrier("weights are not constant") }
        let l = try ctx.requireLayout(0)
        guard l.axis == 1 else { throw Barrier("input channels are not on axis 1") }
        let group = ctx.node.int("group", default: 1)
        let cin = l.atoms.count, cout = w.dims[0]
        if group == 1 {
            try ctx.graph.addMember(wName, axis: 1, atoms: l.atoms, role: .consumer, node: ctx.label)
            let atoms = ctx.graph.newSpace(name: ctx.node.outputs[0], node: ctx.label, opType: "Conv", size: cout)
            try ctx.graph.addMember(wName, axis: 0, atoms: atoms, role: .producer, node: ctx.label)
            if let b = ctx.node.input(2) { try ctx.graph.addMember(b, axis: 0, atoms: atoms, role: .producerBias, node: ctx.label) }
            ctx.setOutput(0, ChannelLayout(axis: 1, atoms: atoms))
        } else if group == cin, cout == cin, w.dims[1] == 1 {
            // Depthwise: output channel k is input channel k filtered on its own.
            try ctx.graph.addMember(wName, axis: 0, atoms: l.atoms, role: .producer, node: ctx.label)
            if let b = ctx.node.input(2) { try ctx.graph.addMember(b, axis: 0, atoms: l.atoms, role: .producerBias, node: ctx.label) }
            ctx.graph.addUpdate(.depthwiseGroup(node: ctx.index, layout: l))
            ctx.setOutput(0, l)
        } else if group > 1, cin == cout, cin % group == 0, w.dims[1] == cin / group {
            // Grouped, as wide out as in (ResNeXt): output channel k goes with input channel k,
            // and position j of every group goes together so the groups stay equally wide.
            let k = cin / group
            for j in 0..<k { for r in 1..<group { ctx.graph.union(l.atoms[j], l.atoms[r * k + j]) } }
            try ctx.graph.addMember(wName, axis: 0, atoms: l.atoms, role: .producer, node: ctx.label)
            try ctx.graph.addMember(wName, axis: 1, atoms: Array(l.atoms[0..<k]), role: .consumer, node: ctx.label)
            if let b = ctx.node.input(2) { try ctx.graph.addMember(b, axis: 0, atoms: l.atoms, role: .producerBias, node: ctx.label) }
            ctx.setOutput(0, l)
        } else {
            throw Barrier("grouped convolution (group \(group), \(cin) in, \(cout) out) is neither depthwise nor as wide out as in")
        }
    }

    static let convTranspose: PruningRule = { ctx in
        guard let wName = ctx.node.input(1), let w = ctx.graph.constants[wName] else { throw Barrier("weights are not constant") }
        guard ctx.node.int("group", default: 1) == 1 else { throw Barrier("grouped ConvTranspose") }
        let l = try ctx.requireLayout(0)
        guard l.axis == 1 else { throw Barrier("input channels are not on axis 1") }
        try ctx.graph.addMember(wName, axis: 0, atoms: l.atoms, role: .consumer, node: ctx.label)
        let atoms = ctx.graph.newSpace(name: ctx.node.outputs[0], node: ctx.label, opType: "ConvTranspose", size: w.dims[1])
        try ctx.graph.addMember(wName, axis: 1, atoms: atoms, role: .producer, node: ctx.label)
        if let b = ctx.node.input(2) { try ctx.graph.addMember(b, axis: 0, atoms: atoms, role: .producerBias, node: ctx.label) }
        ctx.setOutput(0, ChannelLayout(axis: 1, atoms: atoms))
    }

    static let gemm: PruningRule = { ctx in
        guard let bName = ctx.node.input(1), let b = ctx.graph.constants[bName], b.dims.count == 2 else { throw Barrier("B is not a constant matrix") }
        let transA = ctx.node.int("transA", default: 0) != 0, transB = ctx.node.int("transB", default: 0) != 0
        if let l = ctx.layout(0) {
            guard l.axis == (transA ? 0 : 1) else { throw Barrier("features are not on A's inner axis") }
            try ctx.graph.addMember(bName, axis: transB ? 1 : 0, atoms: l.atoms, role: .consumer, node: ctx.label)
        }
        let n = transB ? b.dims[0] : b.dims[1]
        let atoms = ctx.graph.newSpace(name: ctx.node.outputs[0], node: ctx.label, opType: "Gemm", size: n)
        try ctx.graph.addMember(bName, axis: transB ? 0 : 1, atoms: atoms, role: .producer, node: ctx.label)
        if let cName = ctx.node.input(2), let c = ctx.graph.constants[cName], c.elementCount > 1 {
            try ctx.graph.addMember(cName, axis: c.dims.count - 1, atoms: atoms, role: .producerBias, node: ctx.label)
        }
        ctx.setOutput(0, ChannelLayout(axis: 1, atoms: atoms))
    }

    static let matMul: PruningRule = { ctx in
        guard let bName = ctx.node.input(1), let b = ctx.graph.constants[bName], b.dims.count == 2, let a = ctx.dims(0) else {
            throw Barrier("B is not a constant matrix")
        }
        if let l = ctx.layout(0) {
            guard l.axis == a.count - 1 else { throw Barrier("features are not on A's last axis") }
            try ctx.graph.addMember(bName, axis: 0, atoms: l.atoms, role: .consumer, node: ctx.label)
        }
        let atoms = ctx.graph.newSpace(name: ctx.node.outputs[0], node: ctx.label, opType: "MatMul", size: b.dims[1])
        try ctx.graph.addMember(bName, axis: 1, atoms: atoms, role: .producer, node: ctx.label)
        ctx.setOutput(0, ChannelLayout(axis: a.count - 1, atoms: atoms))
    }

    static let concat: PruningRule = { ctx in
        guard let out = ctx.outputDims() else { throw Barrier("output shape unknown") }
        let axis = ctx.node.int("axis", default: 0) < 0 ? ctx.node.int("axis", default: 0) + out.count : ctx.node.int("axis", default: 0)
        var layouts: [ChannelLayout] = []
        for i in ctx.node.inputs.indices where ctx.node.input(i) != nil {
            guard let l = ctx.layout(i) else { throw Barrier("input \(i) has no known channels") }
            layouts.append(l)
        }
        guard let first = layouts.first else { throw Barrier("no inputs") }
        if first.axis == axis {
            guard layouts.allSatisfy({ $0.axis == axis }) else { throw Barrier("inputs carry channels on different axes") }
            ctx.setOutput(0, ChannelLayout(axis: axis, atoms: layouts.flatMap(\.atoms)))
        } else {
            guard !first.axes.contains(axis) else { throw Barrier("concatenation along a split channel axis") }
            for l in layouts.dropFirst() {
                guard l.axes == first.axes else { throw Barrier("inputs carry channels on different axes") }
                try ctx.graph.tie(first.atoms, l.atoms)
            }
            ctx.setOutput(0, first)
        }
    }

    static let split: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0) else { throw Barrier("input shape unknown") }
        var axis = ctx.node.int("axis", default: 0)
        if axis < 0 { axis += d.count }
        guard let channelAxis = l.axis, channelAxis == axis else {
            guard !l.axes.contains(axis) else { throw Barrier("split along a split channel axis") }
            for k in ctx.node.outputs.indices { ctx.setOutput(k, l) }
            return
        }
        var sizes: [Int] = []
        for k in ctx.node.outputs.indices {
            guard let od = ctx.outputDims(k), axis < od.count, od[axis] >= 0 else { throw Barrier("output sizes unknown") }
            sizes.append(od[axis])
        }
        guard sizes.reduce(0, +) == l.atoms.count else { throw Barrier("split sizes do not add up") }
        var start = 0
        var outs: [ChannelLayout] = []
        for (k, s) in sizes.enumerated() {
            let o = ChannelLayout(axis: axis, atoms: Array(l.atoms[start..<(start + s)]))
            outs.append(o)
            ctx.setOutput(k, o)
            start += s
        }
        ctx.graph.addUpdate(.split(node: ctx.index, outputs: outs))
    }

    static let slice: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0) else { throw Barrier("input shape unknown") }
        guard let starts = try ctx.ints(1, attribute: "starts"), let ends = try ctx.ints(2, attribute: "ends") else { throw Barrier("bounds unknown") }
        let axes = try ctx.ints(3, attribute: "axes") ?? Array(0..<starts.count)
        let steps = try ctx.ints(4) ?? Array(repeating: 1, count: starts.count)
        var result = l
        for (k, a0) in axes.enumerated() {
            let a = a0 < 0 ? a0 + d.count : a0
            guard l.axes.contains(a) else { continue }
            guard let channelAxis = l.axis, channelAxis == a else { throw Barrier("slice along a split channel axis") }
            guard steps[k] == 1 else { throw Barrier("slice with step \(steps[k]) along channels") }
            let n = l.atoms.count
            let s = min(max(starts[k] < 0 ? starts[k] + n : starts[k], 0), n)
            let e = min(max(ends[k] < 0 ? ends[k] + n : ends[k], s), n)
            result = ChannelLayout(axis: a, atoms: Array(l.atoms[s..<e]))
            ctx.graph.addUpdate(.slice(node: ctx.index, input: l, start: s, end: e, axis: a))
        }
        ctx.setOutput(0, result)
    }

    /// Each atom `count` times in a row (a channel flattened with its H×W positions); the same
    /// array when `count` is 1.
    static func repeated(_ atoms: [Int], _ count: Int) -> [Int] {
        if count == 1 { return atoms }
        var out: [Int] = []
        out.reserveCapacity(atoms.count * count)
        for a in atoms { out.append(contentsOf: repeatElement(a, count: count)) }
        return out
    }

    static let flatten: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0) else { throw Barrier("input shape unknown") }
        var axis = ctx.node.int("axis", default: 1)
        if axis < 0 { axis += d.count }
        guard axis == 1, l.axis == 1 else { throw Barrier("flatten that does not start at the channel axis") }
        let inner = d.dropFirst(2).reduce(1, *)
        guard inner > 0 else { throw Barrier("spatial size unknown") }
        ctx.setOutput(0, ChannelLayout(axis: 1, atoms: repeated(l.atoms, inner)))
    }

    /// Reshape: flattening the channel axis with what follows it, splitting it into
    /// (groups, channels per group) for a channel shuffle, merging such a split back, or leaving
    /// the channel axis where it is.
    static let reshape: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0), let o = ctx.outputDims() else { throw Barrier("shapes unknown") }
        guard d.allSatisfy({ $0 != 0 }), Array(d.dropFirst()).allSatisfy({ $0 > 0 }), Array(o.dropFirst()).allSatisfy({ $0 > 0 }) else {
            throw Barrier("only the batch dimension may be dynamic")
        }
        guard d.first == o.first else { throw Barrier("reshape changes the batch axis") }
        if let axis = l.axis, axis == 1 {
            let c = l.atoms.count
            if o.count >= 2, o[1] == c, Array(d.dropFirst(2)).reduce(1, *) == Array(o.dropFirst(2)).reduce(1, *), o.count >= 2 {
                // The channel axis stays; only the axes after it change.
                let out = ChannelLayout(axis: 1, atoms: l.atoms)
                ctx.setOutput(0, out)
                ctx.graph.addUpdate(.reshape(node: ctx.index, output: out))
            } else if o.count == 2, o[1] == d.dropFirst().reduce(1, *) {
                let inner = o[1] / c
                let out = ChannelLayout(axis: 1, atoms: repeated(l.atoms, inner))
                ctx.setOutput(0, out)
                ctx.graph.addUpdate(.reshape(node: ctx.index, output: out))
            } else if o.count == d.count + 1, o[1] * o[2] == c, Array(o.dropFirst(3)) == Array(d.dropFirst(2)) {
                // Channel shuffle, first half: C -> (groups, C / groups). Column j of every group
                // must go together so the groups stay equally wide.
                let g = o[1], k = o[2]
                for j in 0..<k {
                    for r in 1..<g { ctx.graph.union(l.atoms[j], l.atoms[r * k + j]) }
                }
                let out = ChannelLayout(axes: [1, 2], sizes: [g, k], atoms: l.atoms)
                ctx.setOutput(0, out)
                ctx.graph.addUpdate(.reshape(node: ctx.index, output: out))
            } else {
                throw Barrier("reshape from \(d) to \(o) mixes channels with other axes")
            }
        } else if l.axes == [1, 2], o.count == d.count - 1, o[1] == l.sizes[0] * l.sizes[1], Array(o.dropFirst(2)) == Array(d.dropFirst(3)) {
            let out = ChannelLayout(axis: 1, atoms: l.atoms)
            ctx.setOutput(0, out)
            ctx.graph.addUpdate(.reshape(node: ctx.index, output: out))
        } else {
            throw Barrier("reshape from \(d) to \(o) of channels on axes \(l.axes)")
        }
    }

    static let transpose: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0) else { throw Barrier("input shape unknown") }
        let perm = ctx.node.ints("perm") ?? Array((0..<d.count).reversed())
        // Output axis k holds input axis perm[k].
        let newAxes = l.axes.map { a in perm.firstIndex(of: a)! }
        if newAxes.count == 1 {
            ctx.setOutput(0, ChannelLayout(axis: newAxes[0], atoms: l.atoms))
        } else if newAxes.count == 2 {
            if newAxes[0] < newAxes[1] {
                ctx.setOutput(0, ChannelLayout(axes: newAxes, sizes: l.sizes, atoms: l.atoms))
            } else {
                let (a, b) = (l.sizes[0], l.sizes[1])
                var atoms = [Int](repeating: 0, count: a * b)
                for i in 0..<a { for j in 0..<b { atoms[j * a + i] = l.atoms[i * b + j] } }
                ctx.setOutput(0, ChannelLayout(axes: [newAxes[1], newAxes[0]], sizes: [b, a], atoms: atoms))
            }
        } else {
            throw Barrier("channels on more than two axes")
        }
    }

    static let squeezeOrUnsqueeze: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0), let axis = l.axis else { throw Barrier("layout unknown") }
        guard let axes0 = try ctx.ints(1, attribute: "axes") else { throw Barrier("axes unknown") }
        if ctx.node.opType == "Squeeze" {
            let axes = axes0.map { $0 < 0 ? $0 + d.count : $0 }
            guard !axes.contains(axis) else { throw Barrier("squeezes the channel axis") }
            ctx.setOutput(0, ChannelLayout(axis: axis - axes.filter { $0 < axis }.count, atoms: l.atoms))
        } else {
            let rank = d.count + axes0.count
            let axes = Set(axes0.map { $0 < 0 ? $0 + rank : $0 })
            var k = -1, j = 0
            for i in 0..<rank where !axes.contains(i) {
                if j == axis { k = i }
                j += 1
            }
            ctx.setOutput(0, ChannelLayout(axis: k, atoms: l.atoms))
        }
    }

    static let reduce: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0), let axis = l.axis else { throw Barrier("layout unknown") }
        let keep = ctx.node.int("keepdims", default: 1) != 0
        guard let axes0 = try ctx.ints(1, attribute: "axes"), !axes0.isEmpty else { throw Barrier("reduces every axis") }
        let axes = axes0.map { $0 < 0 ? $0 + d.count : $0 }
        guard !axes.contains(axis) else { throw Barrier("reduces over channels") }
        ctx.setOutput(0, ChannelLayout(axis: keep ? axis : axis - axes.filter { $0 < axis }.count, atoms: l.atoms))
    }

    static let pad: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let axis = l.axis, let d = ctx.dims(0) else { throw Barrier("layout unknown") }
        guard let pads = try ctx.ints(1, attribute: "pads") else { throw Barrier("pads unknown") }
        let axes = try ctx.ints(3) ?? Array(0..<d.count)
        if let k = axes.firstIndex(where: { ($0 < 0 ? $0 + d.count : $0) == axis }), pads[k] != 0 || pads[k + axes.count] != 0 {
            throw Barrier("pads the channel axis")
        }
        ctx.setOutput(0, l)
    }

    static let resize: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let i = l.axis, let d = ctx.dims(0), let o = ctx.outputDims(), i < o.count, o[i] == d[i] else { throw Barrier("resizes the channel axis") }
        ctx.setOutput(0, l)
    }

    static let softmax: PruningRule = { ctx in
        let l = try ctx.requireLayout(0)
        guard let d = ctx.dims(0) else { throw Barrier("shape unknown") }
        var axis = ctx.node.int("axis", default: -1)
        if axis < 0 { axis += d.count }
        guard !l.axes.contains(axis) else { throw Barrier("normalises across channels") }
        ctx.setOutput(0, l)
    }
}
