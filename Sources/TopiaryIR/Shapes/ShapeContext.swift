/// What a shape rule sees of one node: its attributes, opset and the facts of its inputs.
struct ShapeContext {
    let node: Node
    let opset: Int
    /// Facts of each input, aligned with `node.inputs` (nil for omitted or unknown inputs).
    let inputs: [ValueFacts?]

    /// Type of input `i`, or a failure naming it.
    func type(_ i: Int) throws -> TensorType {
        guard i < inputs.count, let t = inputs[i]?.type else {
            throw ShapeFailure("type of input \(i) ('\(i < node.inputs.count ? node.inputs[i] : "")') is unknown")
        }
        return t
    }

    /// Shape of input `i`, or a failure.
    func shape(_ i: Int) throws -> [Dim] {
        guard let s = try type(i).shape else { throw ShapeFailure("rank of input \(i) is unknown") }
        return s
    }

    /// True when input `i` is given.
    func has(_ i: Int) -> Bool { i < node.inputs.count && !node.inputs[i].isEmpty }

    /// The contents of input `i` as plain integers, when all are known.
    func ints(_ i: Int) -> [Int]? {
        guard i < inputs.count, let v = inputs[i]?.value else { return nil }
        var out: [Int] = []
        for d in v {
            guard let n = d.value else { return nil }
            out.append(n)
        }
        return out
    }

    /// Contents of input `i` (integers) or, failing that, of attribute `attr`; nil when neither is
    /// given. Throws when the input is given but its contents are not known.
    func intsInputOrAttribute(_ i: Int, _ attr: String) throws -> [Int]? {
        if has(i) {
            guard let v = ints(i) else { throw ShapeFailure("input \(i) ('\(node.inputs[i])') is not a known constant") }
            return v
        }
        return node.ints(attr)
    }

    /// Output facts with the same element type as input 0.
    func same(_ shape: [Dim]?, value: [Dim]? = nil) throws -> ValueFacts {
        ValueFacts(type: TensorType(try type(0).elemType, shape), value: value)
    }
}

/// Arithmetic on shapes shared by the rules.
enum ShapeMath {
    /// Numpy-style broadcasting of several shapes.
    static func broadcast(_ shapes: [[Dim]]) -> [Dim] {
        let rank = shapes.map(\.count).max() ?? 0
        var out = [Dim](repeating: .value(1), count: rank)
        for k in 0..<rank {
            var result: Dim = .value(1)
            for s in shapes {
                let idx = s.count - rank + k
                guard idx >= 0 else { continue }
                let d = s[idx]
                switch (result, d) {
                case (.value(1), _): result = d
                case (_, .value(1)): break
                case (.value(let a), .value(let b)) where a == b: break
                case (.value, .param), (.value, .unknown): break
                case (.param, .value(let b)), (.unknown, .value(let b)): result = .value(b)
                case (.param(let a), .param(let b)) where a == b: break
                default: result = .unknown
                }
            }
            out[k] = result
        }
        return out
    }

    /// Normalises a possibly negative axis for a given rank.
    static func axis(_ a: Int, rank: Int) throws -> Int {
        let r = a < 0 ? a + rank : a
        guard r >= 0 && r < max(rank, 1) else { throw ShapeFailure("axis \(a) is out of range for rank \(rank)") }
        return r
    }

    /// Product of dims: a number when all are numbers, a symbol when exactly one symbol remains
    /// and the rest multiply to 1, unknown otherwise.
    static func product(_ dims: ArraySlice<Dim>) -> Dim {
        var n = 1
        var symbols: [Dim] = []
        for d in dims {
            switch d {
            case .value(let v): n *= v
            default: symbols.append(d)
            }
        }
        if symbols.isEmpty { return .value(n) }
        if symbols.count == 1, n == 1, case .param = symbols[0] { return symbols[0] }
        return .unknown
    }

    /// Output length of a sliding window (convolution or pooling) along one axis.
    static func windowOutput(input: Int, kernel: Int, stride: Int, dilation: Int, padBegin: Int, padEnd: Int, ceilMode: Bool) -> Int {
        let effective = dilation * (kernel - 1) + 1
        let span = input + padBegin + padEnd - effective
        guard span >= 0 else { return 0 }
        var out = (ceilMode ? (span + stride - 1) / stride : span / stride) + 1
        // The last window must start inside the input or its leading padding.
        if ceilMode && (out - 1) * stride >= input + padBegin { out -= 1 }
        return out
    }

    /// Element-wise integer arithmetic on known values.
    static func arithmetic(_ a: [Dim], _ b: [Dim], _ op: (Int, Int) -> Int?) -> [Dim]? {
        let n = max(a.count, b.count)
        guard a.count == n || a.count == 1, b.count == n || b.count == 1 else { return nil }
        return (0..<n).map { i in
            let x = a[a.count == 1 ? 0 : i], y = b[b.count == 1 ? 0 : i]
            if let xv = x.value, let yv = y.value, let r = op(xv, yv) { return .value(r) }
            if case .value(1) = y, op(1, 1) == 1 { return x }  // x * 1, x / 1
            if case .value(0) = y, op(0, 0) == 0, op(5, 0) == 5 { return x }  // x + 0, x - 0
            return .unknown
        }
    }
}
