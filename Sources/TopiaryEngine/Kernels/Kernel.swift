import TopiaryIR

/// One node of a compiled program: a forward pass and the vector-Jacobian product that adds the
/// gradients of its inputs (where they have gradient buffers) from the gradient of its outputs.
protocol Kernel: AnyObject {
    func forward(_ s: Store, training: Bool)
    func backward(_ s: Store)
}

/// What a kernel factory sees when compiling a node.
struct KernelContext {
    let node: Node
    let store: Store
    /// Value id of each input ("" inputs get -1).
    let inputs: [Int]
    let outputs: [Int]
    /// Constant contents of inputs, where constant.
    let constants: [Tensor?]
    /// Whether kernels may use their direct (C, vector) forms where this build has them.
    var direct = true

    func shape(in i: Int) -> [Int] { inputs[i] >= 0 ? store.shapes[inputs[i]] : [] }
    func shape(out k: Int) -> [Int] { store.shapes[outputs[k]] }
    func has(_ i: Int) -> Bool { i < inputs.count && inputs[i] >= 0 }

    /// Integer contents of a constant input, or of an attribute.
    func ints(_ i: Int, attribute: String? = nil) throws -> [Int]? {
        if has(i) {
            guard let v = constants[i]?.int64Values() else { throw EngineError.unsupported("\(node.opType) '\(node.label)': input \(i) must be a constant") }
            return v.map { Int($0) }
        }
        return attribute.flatMap { node.ints($0) }
    }

    /// A scalar float from a constant input or an attribute.
    func scalar(_ i: Int, attribute: String, default d: Float) throws -> Float {
        if has(i) {
            guard let v = constants[i]?.floatValues()?.first else { throw EngineError.unsupported("\(node.opType) '\(node.label)': input \(i) must be a constant") }
            return v
        }
        return node.float(attribute, default: d)
    }
}

typealias KernelFactory = @Sendable (KernelContext) throws -> Kernel

/// Why a model cannot be compiled or run.
public enum EngineError: Error, CustomStringConvertible, Equatable {
    case unsupported(String)
    case shape(String)
    case data(String)

    public var description: String {
        switch self {
        case .unsupported(let s): return "the engine cannot run this model: \(s)"
        case .shape(let s): return "shape: \(s)"
        case .data(let s): return s
        }
    }
}
