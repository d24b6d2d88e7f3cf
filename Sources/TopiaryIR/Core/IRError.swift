/// Why a model could not be read, analysed or written.
public enum IRError: Error, Equatable {
    /// The bytes are not an ONNX model (truncated, corrupt or another format).
    case notAModel(String)
    /// The model breaks a rule of the ONNX format.
    case invalid(String)
    /// A tensor's declared size does not fit the data that came with it, or cannot be allocated.
    case badTensor(name: String, reason: String)
    /// External data could not be used.
    case externalData(tensor: String, reason: String)
    /// The graph has a cycle through these nodes.
    case cycle(nodes: [String])
    /// A node uses an operator that is not in the ONNX operator set it imports.
    case unknownOperator(op: String, node: String)
    /// The model uses something Topiary does not support.
    case unsupported(String)
    /// Reading or writing a file failed.
    case io(String)
}

extension IRError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .notAModel(let why): return "not a valid ONNX model: \(why)"
        case .invalid(let why): return "invalid model: \(why)"
        case .badTensor(let name, let reason): return "tensor '\(name)': \(reason)"
        case .externalData(let name, let reason): return "external data of tensor '\(name)': \(reason)"
        case .cycle(let nodes): return "the graph has a cycle through node(s) \(nodes.map { "'\($0)'" }.joined(separator: ", "))"
        case .unknownOperator(let op, let node): return "node '\(node)' uses operator '\(op)', which is not an ONNX operator"
        case .unsupported(let what): return "unsupported: \(what)"
        case .io(let why): return why
        }
    }
}

/// An error tied to the file it concerns; its description starts with the path.
public struct FileError: Error, CustomStringConvertible {
    public let path: String
    public let error: Error

    public init(path: String, error: Error) {
        self.path = path
        self.error = error
    }

    public var description: String { "\(path): \(error)" }
}
