/// A shape rule: facts of a node's outputs from the facts of its inputs.
typealias ShapeRule = @Sendable (ShapeContext) throws -> [ValueFacts]

/// Shape rules keyed by ONNX op name (default domain). Supporting a new op is one entry here.
enum ShapeRules {
    static let table: [String: ShapeRule] = {
        var t: [String: ShapeRule] = [:]
        for op in unaryOps { t[op] = sameAsInput }
        for op in broadcastOps { t[op] = broadcasting(bool: false) }
        for op in comparisonOps { t[op] = broadcasting(bool: true) }
        t.merge(windowRules) { a, _ in a }
        t.merge(layoutRules) { a, _ in a }
        t.merge(valueRules) { a, _ in a }
        t.merge(reductionRules) { a, _ in a }
        return t
    }()

    /// Ops whose output has the input's type and shape.
    static let unaryOps = [
        "Relu", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "Softmax", "LogSoftmax", "Hardmax",
        "Identity", "Elu", "Selu", "Celu", "Gelu", "Mish", "Softplus", "Softsign", "ThresholdedRelu", "Shrink",
        "Exp", "Log", "Sqrt", "Neg", "Abs", "Reciprocal", "Floor", "Ceil", "Round", "Sign", "Erf",
        "Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Not",
        "LRN", "InstanceNormalization", "LpNormalization", "MeanVarianceNormalization", "LayerNormalization",
        "GroupNormalization", "Swish", "CumSum",
    ]

    /// Ops that broadcast their inputs and keep the first input's element type.
    static let broadcastOps = ["Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Sum", "Mean", "PRelu", "Mod", "BitShift", "And", "Or", "Xor"]

    /// Broadcasting ops with a bool result.
    static let comparisonOps = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"]

    static let sameAsInput: ShapeRule = { ctx in
        var outs = [try ctx.same(try ctx.type(0).shape, value: ctx.node.opType == "Identity" ? ctx.inputs[0]?.value : nil)]
        // LayerNormalization may also output mean and inverse std (shapes not needed downstream).
        for _ in 1..<max(ctx.node.outputs.count, 1) { outs.append(ValueFacts(type: nil)) }
        return outs
    }

    static func broadcasting(bool: Bool) -> ShapeRule {
        return { ctx in
            var shapes: [[Dim]] = []
            for i in ctx.inputs.indices where ctx.has(i) { shapes.append(try ctx.shape(i)) }
            let shape = ShapeMath.broadcast(shapes)
            let elem = bool ? DataType.bool : try ctx.type(0).elemType
            var value: [Dim]?
            if ctx.inputs.count == 2, let a = ctx.inputs[0]?.value, let b = ctx.inputs[1]?.value, shape.count <= 1 {
                switch ctx.node.opType {
                case "Add": value = ShapeMath.arithmetic(a, b) { $0 + $1 }
                case "Sub": value = ShapeMath.arithmetic(a, b) { $0 - $1 }
                case "Mul": value = ShapeMath.arithmetic(a, b) { $0 * $1 }
                case "Div": value = ShapeMath.arithmetic(a, b) { $1 == 0 ? nil : $0 / $1 }
                case "Max": value = ShapeMath.arithmetic(a, b) { Swift.max($0, $1) }
                case "Min": value = ShapeMath.arithmetic(a, b) { Swift.min($0, $1) }
                default: value = nil
                }
            }
            return [ValueFacts(type: TensorType(elem, shape), value: value)]
        }
    }
}
