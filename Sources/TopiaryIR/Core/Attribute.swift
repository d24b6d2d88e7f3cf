/// A node attribute (ONNX `AttributeProto`).
public struct Attribute {
    /// The attribute's value, one case per ONNX attribute type.
    public enum Value {
        case float(Float)
        case int(Int64)
        case string([UInt8])
        case tensor(Tensor)
        case graph(Graph)
        case sparseTensor(OpaqueMessage)
        case typeProto(OpaqueMessage)
        case floats([Float])
        case ints([Int64])
        case strings([[UInt8]])
        case tensors([Tensor])
        case graphs([Graph])
        case sparseTensors([OpaqueMessage])
        case typeProtos([OpaqueMessage])
        /// Type UNDEFINED: only legal with `refAttrName` inside a function.
        case undefined
    }

    public var name: String
    public var value: Value
    public var refAttrName: String = ""
    public var docString: String = ""
    /// Fields outside the schema, written back unchanged.
    public var unknownFields: [UnknownField] = []

    public init(name: String, value: Value) {
        self.name = name
        self.value = value
    }

    public var int: Int64? {
        if case .int(let v) = value { return v }
        return nil
    }

    public var float: Float? {
        if case .float(let v) = value { return v }
        return nil
    }

    public var ints: [Int64]? {
        if case .ints(let v) = value { return v }
        return nil
    }

    public var floats: [Float]? {
        if case .floats(let v) = value { return v }
        return nil
    }

    public var string: String? {
        if case .string(let v) = value { return String(decoding: v, as: UTF8.self) }
        return nil
    }

    public var tensor: Tensor? {
        if case .tensor(let v) = value { return v }
        return nil
    }

    /// Every subgraph the attribute holds.
    public var subgraphs: [Graph] {
        switch value {
        case .graph(let g): return [g]
        case .graphs(let gs): return gs
        default: return []
        }
    }
}
