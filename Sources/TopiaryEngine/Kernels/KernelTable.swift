import TopiaryIR

/// Kernel factories keyed by ONNX op name: supporting a new op is one entry here.
enum KernelTable {
    static let table: [String: KernelFactory] = {
        var t: [String: KernelFactory] = [:]
        for op in ["Relu", "LeakyRelu", "Clip", "Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "Identity", "Neg", "Exp", "Sqrt", "Abs"] {
            t[op] = UnaryKernel.make
        }
        t["Dropout"] = { c in
            let ratio = try c.scalar(1, attribute: "ratio", default: 0.5)
            return DropoutKernel(x: c.inputs[0], y: c.outputs[0], ratio: ratio, count: c.store.count(c.outputs[0]), seed: UInt64(c.outputs[0]))
        }
        t["Add"] = { try BinaryKernel($0, op: .add) }
        t["Sub"] = { try BinaryKernel($0, op: .sub) }
        t["Mul"] = { try BinaryKernel($0, op: .mul) }
        t["Div"] = { try BinaryKernel($0, op: .div) }
        t["PRelu"] = { try BinaryKernel($0, op: .prelu) }
        t["Conv"] = { try ConvKernel($0) }
        t["BatchNormalization"] = { try BatchNormKernel($0) }
        t["MaxPool"] = { try PoolKernel($0, isMax: true) }
        t["AveragePool"] = { try PoolKernel($0, isMax: false) }
        t["Gemm"] = { try GemmKernel($0) }
        t["MatMul"] = { try MatMulKernel($0) }
        for op in ["Reshape", "Flatten", "Squeeze", "Unsqueeze"] { t[op] = { c in CopyKernel(x: c.inputs[0], y: c.outputs[0]) } }
        t["GlobalAveragePool"] = { c in
            let s = c.shape(in: 0)
            return MeanKernel(x: c.inputs[0], y: c.outputs[0], outer: s[0] * s[1], inner: s.dropFirst(2).reduce(1, *))
        }
        t["ReduceMean"] = { c in
            let s = c.shape(in: 0)
            guard let axes0 = try c.ints(1, attribute: "axes") else { throw EngineError.unsupported("ReduceMean '\(c.node.label)' over every axis") }
            let axes = Set(axes0.map { $0 < 0 ? $0 + s.count : $0 })
            guard let first = axes.min(), axes == Set(first..<s.count) else { throw EngineError.unsupported("ReduceMean '\(c.node.label)' over axes that are not the trailing ones") }
            return MeanKernel(x: c.inputs[0], y: c.outputs[0], outer: s[..<first].reduce(1, *), inner: s[first...].reduce(1, *))
        }
        t["Softmax"] = { c in
            let s = c.shape(in: 0)
            let axis = c.node.int("axis", default: -1)
            guard axis == -1 || axis == s.count - 1 else { throw EngineError.unsupported("Softmax '\(c.node.label)' over a non-last axis") }
            return SoftmaxKernel(x: c.inputs[0], y: c.outputs[0], rows: s.dropLast().reduce(1, *), cols: s.last ?? 1)
        }
        t["Concat"] = { c in
            let shapes = c.inputs.indices.filter { c.has($0) }.map { c.shape(in: $0) }
            var axis = c.node.int("axis", default: 0)
            if axis < 0 { axis += shapes[0].count }
            return GatherKernel(sources: c.inputs.filter { $0 >= 0 }, outputs: [c.outputs[0]], maps: [LayoutMaps.concat(inputs: shapes, axis: axis)])
        }
        t["Split"] = { c in
            let s = c.shape(in: 0)
            var axis = c.node.int("axis", default: 0)
            if axis < 0 { axis += s.count }
            let sizes = c.outputs.map { c.store.shapes[$0][axis] }
            return GatherKernel(sources: [c.inputs[0]], outputs: c.outputs, maps: LayoutMaps.split(input: s, axis: axis, sizes: sizes))
        }
        t["Slice"] = { c in
            let s = c.shape(in: 0), o = c.shape(out: 0)
            guard let starts0 = try c.ints(1, attribute: "starts") else { throw EngineError.unsupported("Slice without starts") }
            let axes = (try c.ints(3, attribute: "axes") ?? Array(0..<starts0.count)).map { $0 < 0 ? $0 + s.count : $0 }
            let steps0 = try c.ints(4) ?? Array(repeating: 1, count: starts0.count)
            var starts = [Int](repeating: 0, count: s.count), steps = [Int](repeating: 1, count: s.count)
            for (k, a) in axes.enumerated() {
                var st = starts0[k] < 0 ? starts0[k] + s[a] : starts0[k]
                st = steps0[k] > 0 ? min(max(st, 0), s[a]) : min(max(st, 0), s[a] - 1)
                (starts[a], steps[a]) = (st, steps0[k])
            }
            return GatherKernel(sources: [c.inputs[0]], outputs: [c.outputs[0]], maps: [LayoutMaps.slice(input: s, output: o, starts: starts, steps: steps)])
        }
        t["Transpose"] = { c in
            let s = c.shape(in: 0)
            let perm = c.node.ints("perm") ?? Array((0..<s.count).reversed())
            return GatherKernel(sources: [c.inputs[0]], outputs: [c.outputs[0]], maps: [LayoutMaps.transpose(input: s, perm: perm)])
        }
        t["Pad"] = { c in
            let s = c.shape(in: 0), o = c.shape(out: 0)
            guard c.node.string("mode", default: "constant") == "constant" else { throw EngineError.unsupported("Pad '\(c.node.label)' mode other than constant") }
            guard let pads = try c.ints(1, attribute: "pads") else { throw EngineError.unsupported("Pad without pads") }
            let axes = try c.ints(3) ?? Array(0..<s.count)
            var begins = [Int](repeating: 0, count: s.count)
            for (k, a) in axes.enumerated() { begins[a < 0 ? a + s.count : a] = pads[k] }
            let value = c.has(2) ? (c.constants[2]?.floatValues()?.first ?? 0) : c.node.float("value", default: 0)
            return GatherKernel(sources: [c.inputs[0]], outputs: [c.outputs[0]], maps: [LayoutMaps.pad(input: s, output: o, begins: begins)], padValue: value)
        }
        return t
    }()
}
