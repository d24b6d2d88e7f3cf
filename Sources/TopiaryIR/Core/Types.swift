/// One dimension of a tensor shape: a number, a symbol (`batch`) or unknown.
public enum Dim: Hashable, Sendable {
    case value(Int)
    case param(String)
    case unknown

    /// The number, when known.
    public var value: Int? {
        if case .value(let v) = self { return v }
        return nil
    }
}

extension Dim: CustomStringConvertible {
    public var description: String {
        switch self {
        case .value(let v): return String(v)
        case .param(let p): return p
        case .unknown: return "?"
        }
    }
}

/// The type of a tensor value: element type and, when known, shape.
public struct TensorType: Equatable, Sendable {
    public var elemType: DataType
    /// nil when even the rank is unknown.
    public var shape: [Dim]?

    public init(_ elemType: DataType, _ shape: [Dim]?) {
        self.elemType = elemType
        self.shape = shape
    }

    /// Shape as plain numbers, when every dimension is known.
    public var staticShape: [Int]? {
        guard let shape else { return nil }
        var out: [Int] = []
        out.reserveCapacity(shape.count)
        for d in shape {
            guard let v = d.value else { return nil }
            out.append(v)
        }
        return out
    }

    /// Number of elements with every symbolic dimension taken as 1 (the batch-1 convention of the
    /// cost model), or nil when a dimension is unknown.
    public var elementCountAtUnitBatch: Int? {
        guard let shape else { return nil }
        var n = 1
        for d in shape {
            switch d {
            case .value(let v): n *= v
            case .param: break
            case .unknown: return nil
            }
        }
        return n
    }
}

extension TensorType: CustomStringConvertible {
    public var description: String {
        guard let shape else { return "\(elemType)[?]" }
        return "\(elemType)[" + shape.map(\.description).joined(separator: ",") + "]"
    }
}

/// The type carried by a `ValueInfoProto`.
public enum ValueType {
    /// A tensor; `dimDenotations` and `denotation` are kept only for a faithful round trip.
    case tensor(TensorType, dimDenotations: [String], denotation: String)
    /// Any other type (sequence, map, optional, sparse, opaque), kept as its serialized `TypeProto`.
    case other(OpaqueMessage)
    /// No type given.
    case none

    public var tensorType: TensorType? {
        if case .tensor(let t, _, _) = self { return t }
        return nil
    }
}

/// A value's name and type (ONNX `ValueInfoProto`).
public struct ValueInfo {
    public var name: String
    public var type: ValueType
    public var docString: String = ""
    public var metadataProps: [StringPair] = []
    /// Fields outside the schema, written back unchanged.
    public var unknownFields: [UnknownField] = []

    public init(name: String, type: ValueType) {
        self.name = name
        self.type = type
    }

    public init(name: String, tensor: TensorType) {
        self.init(name: name, type: .tensor(tensor, dimDenotations: [], denotation: ""))
    }
}

/// A protobuf message Topiary carries through unchanged, kept in serialized form.
public struct OpaqueMessage: Equatable, Sendable {
    /// Which ONNX message the bytes are.
    public enum Kind: Sendable {
        case function, trainingInfo, deviceConfiguration, nodeDeviceConfiguration
        case sparseTensor, tensorAnnotation, typeProto
    }

    public var kind: Kind
    public var bytes: [UInt8]
}

/// A protobuf field the schema does not know (written by a newer ONNX, or a vendor), kept as
/// read so a round trip writes it back.
public struct UnknownField: Equatable, Sendable {
    public var tag: UInt32
    public var wireType: UInt32
    public var data: [UInt8]
}
