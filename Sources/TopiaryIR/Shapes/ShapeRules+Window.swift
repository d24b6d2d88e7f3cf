/// Convolution, pooling, matrix products and normalisation.
extension ShapeRules {
    static let windowRules: [String: ShapeRule] = [
        "Conv": { ctx in
            let x = try ctx.shape(0), w = try ctx.shape(1)
            guard x.count >= 3, w.count == x.count else { throw ShapeFailure("Conv needs input and weight of equal rank ≥ 3") }
            let kernel = try ctx.node.ints("kernel_shape") ?? w.dropFirst(2).map { d -> Int in
                guard let v = d.value else { throw ShapeFailure("kernel size unknown") }
                return v
            }
            let spatial = try windowSizes(ctx, input: Array(x.dropFirst(2)), kernel: kernel, ceilMode: false)
            return [try ctx.same([x[0], w[0]] + spatial)]
        },
        "ConvTranspose": { ctx in
            let x = try ctx.shape(0), w = try ctx.shape(1)
            guard x.count >= 3, w.count == x.count else { throw ShapeFailure("ConvTranspose needs input and weight of equal rank ≥ 3") }
            let n = x.count - 2
            let group = ctx.node.int("group", default: 1)
            let channels: Dim = w[1].value.map { .value($0 * group) } ?? .unknown
            if let out = ctx.node.ints("output_shape") {
                return [try ctx.same([x[0], channels] + out.suffix(n).map { .value($0) })]
            }
            let kernel = try ctx.node.ints("kernel_shape") ?? w.dropFirst(2).map { d -> Int in
                guard let v = d.value else { throw ShapeFailure("kernel size unknown") }
                return v
            }
            let strides = ctx.node.ints("strides") ?? Array(repeating: 1, count: n)
            let dil = ctx.node.ints("dilations") ?? Array(repeating: 1, count: n)
            let pads = ctx.node.ints("pads") ?? Array(repeating: 0, count: 2 * n)
            let outPad = ctx.node.ints("output_padding") ?? Array(repeating: 0, count: n)
            let autoPad = ctx.node.string("auto_pad", default: "NOTSET")
            let spatial: [Dim] = (0..<n).map { i in
                guard let v = x[2 + i].value else { return .unknown }
                if autoPad == "SAME_UPPER" || autoPad == "SAME_LOWER" { return .value(v * strides[i]) }
                let p = autoPad == "VALID" ? 0 : pads[i] + pads[i + n]
                return .value(strides[i] * (v - 1) + outPad[i] + (kernel[i] - 1) * dil[i] + 1 - p)
            }
            return [try ctx.same([x[0], channels] + spatial)]
        },
        "MaxPool": poolRule,
        "AveragePool": poolRule,
        "LpPool": poolRule,
        "GlobalAveragePool": globalPool,
        "GlobalMaxPool": globalPool,
        "GlobalLpPool": globalPool,
        "Gemm": { ctx in
            let a = try ctx.shape(0), b = try ctx.shape(1)
            guard a.count == 2, b.count == 2 else { throw ShapeFailure("Gemm needs 2-D inputs") }
            let m = ctx.node.int("transA", default: 0) != 0 ? a[1] : a[0]
            let n = ctx.node.int("transB", default: 0) != 0 ? b[0] : b[1]
            return [try ctx.same([m, n])]
        },
        "MatMul": { ctx in
            var a = try ctx.shape(0), b = try ctx.shape(1)
            guard !a.isEmpty, !b.isEmpty else { throw ShapeFailure("MatMul of a scalar") }
            let aVector = a.count == 1, bVector = b.count == 1
            if aVector { a = [.value(1)] + a }
            if bVector { b = b + [.value(1)] }
            let batch = ShapeMath.broadcast([Array(a.dropLast(2)), Array(b.dropLast(2))])
            var out = batch + [a[a.count - 2], b[b.count - 1]]
            if aVector { out.remove(at: out.count - 2) }
            if bVector { out.removeLast() }
            return [try ctx.same(out)]
        },
        "BatchNormalization": { ctx in
            let x = try ctx.shape(0)
            var outs = [try ctx.same(x)]
            let c: [Dim] = x.count > 1 ? [x[1]] : []
            for _ in 1..<max(ctx.node.outputs.count, 1) { outs.append(try ctx.same(c)) }
            return outs
        },
    ]

    static let poolRule: ShapeRule = { ctx in
        let x = try ctx.shape(0)
        guard x.count >= 3 else { throw ShapeFailure("pooling needs rank ≥ 3") }
        guard let kernel = ctx.node.ints("kernel_shape") else { throw ShapeFailure("no kernel_shape") }
        let spatial = try windowSizes(ctx, input: Array(x.dropFirst(2)), kernel: kernel, ceilMode: ctx.node.int("ceil_mode", default: 0) != 0)
        let out = [x[0], x[1]] + spatial
        var outs = [try ctx.same(out)]
        if ctx.node.outputs.count > 1 { outs.append(ValueFacts(type: TensorType(.int64, out))) }
        return outs
    }

    static let globalPool: ShapeRule = { ctx in
        let x = try ctx.shape(0)
        guard x.count >= 2 else { throw ShapeFailure("global pooling needs rank ≥ 2") }
        return [try ctx.same([x[0], x[1]] + Array(repeating: .value(1), count: x.count - 2))]
    }

    /// Spatial output sizes of a convolution or pooling window.
    static func windowSizes(_ ctx: ShapeContext, input: [Dim], kernel: [Int], ceilMode: Bool) throws -> [Dim] {
        let n = input.count
        guard kernel.count == n else { throw ShapeFailure("kernel_shape has \(kernel.count) entries for \(n) spatial axes") }
        let strides = ctx.node.ints("strides") ?? Array(repeating: 1, count: n)
        let dil = ctx.node.ints("dilations") ?? Array(repeating: 1, count: n)
        let pads = ctx.node.ints("pads") ?? Array(repeating: 0, count: 2 * n)
        guard strides.count == n, dil.count == n, pads.count == 2 * n else { throw ShapeFailure("strides, dilations or pads do not match the rank") }
        guard strides.allSatisfy({ $0 > 0 }), dil.allSatisfy({ $0 > 0 }), kernel.allSatisfy({ $0 > 0 }) else {
            throw ShapeFailure("strides, dilations and kernel sizes must be positive")
        }
        let autoPad = ctx.node.string("auto_pad", default: "NOTSET")
        return (0..<n).map { i in
            guard let v = input[i].value else { return .unknown }
            switch autoPad {
            case "SAME_UPPER", "SAME_LOWER": return .value((v + strides[i] - 1) / strides[i])
            case "VALID": return .value(ShapeMath.windowOutput(input: v, kernel: kernel[i], stride: strides[i], dilation: dil[i], padBegin: 0, padEnd: 0, ceilMode: ceilMode))
            default: return .value(ShapeMath.windowOutput(input: v, kernel: kernel[i], stride: strides[i], dilation: dil[i], padBegin: pads[i], padEnd: pads[i + n], ceilMode: ceilMode))
            }
        }
    }
}
