/// A key/value string pair (ONNX `StringStringEntryProto`): metadata, external-data keys.
public struct StringPair: Equatable, Sendable {
    public var key: String
    public var value: String
    public init(_ key: String, _ value: String) {
        self.key = key
        self.value = value
    }
}

/// A constant tensor: an initializer, a `Constant` node's value or a tensor attribute.
///
/// Elements live in `buffer` in ONNX's little-endian `raw_data` layout whatever field the file
/// used; `encoding` remembers that field so an unchanged model is written back the way it came.
public struct Tensor: Sendable {
    /// How the elements were (and will be) stored in the protobuf.
    public enum Encoding: Sendable, Equatable {
        /// `raw_data`.
        case raw
        /// The typed repeated field for the data type (`float_data`, `int32_data`, …).
        case typed
    }

    /// Where an external tensor's bytes were read from, relative to the model's folder.
    public struct ExternalSource: Sendable, Equatable {
        public var location: String
        public var offset: Int
        public var length: Int
    }

    public var name: String
    public var dataType: DataType
    public var dims: [Int]
    public var encoding: Encoding = .raw
    /// The elements (every type but `string`).
    public private(set) var buffer: TensorBuffer

    struct Rare: RareDefaults {
        var docString = ""
        var metadataProps: [StringPair] = []
        var segment: (begin: Int64, end: Int64)?
        var externalSource: ExternalSource?
        var strings: [[UInt8]] = []
        var unknownFields: [UnknownField] = []
    }
    private var rare = RareFields<Rare>()

    public var docString: String {
        get { rare[\.docString] }
        set { rare.set(\.docString, newValue, empty: newValue.isEmpty) }
    }
    public var metadataProps: [StringPair] {
        get { rare[\.metadataProps] }
        set { rare.set(\.metadataProps, newValue, empty: newValue.isEmpty) }
    }
    /// `TensorProto.segment` (begin, end) when the tensor is one chunk of a larger one.
    public var segment: (begin: Int64, end: Int64)? {
        get { rare[\.segment] }
        set { rare.set(\.segment, newValue, empty: newValue == nil) }
    }
    /// Set when the bytes came from an external data file.
    public var externalSource: ExternalSource? {
        get { rare[\.externalSource] }
        set { rare.set(\.externalSource, newValue, empty: newValue == nil) }
    }
    /// The elements of a `string` tensor.
    public var strings: [[UInt8]] {
        get { rare[\.strings] }
        set { rare.set(\.strings, newValue, empty: newValue.isEmpty) }
    }
    /// Fields outside the schema, written back unchanged.
    public var unknownFields: [UnknownField] {
        get { rare[\.unknownFields] }
        set { rare.set(\.unknownFields, newValue, empty: newValue.isEmpty) }
    }

    /// A tensor over existing bytes; `buffer.count` must match `dims` and `dataType`.
    public init(name: String, dataType: DataType, dims: [Int], buffer: TensorBuffer) {
        self.name = name
        self.dataType = dataType
        self.dims = dims
        self.buffer = buffer
    }

    /// A float32 tensor holding `values`.
    public init(name: String, floats values: [Float], dims: [Int]) {
        self.init(name: name, dataType: .float, dims: dims, buffer: TensorBuffer(copying: values))
    }

    /// An int64 tensor holding `values`.
    public init(name: String, int64s values: [Int64], dims: [Int]) {
        self.init(name: name, dataType: .int64, dims: dims, buffer: TensorBuffer(copying: values))
    }

    /// A string tensor.
    public init(name: String, strings: [[UInt8]], dims: [Int]) {
        self.init(name: name, dataType: .string, dims: dims, buffer: TensorBuffer(zeroedCount: 0))
        self.strings = strings
    }

    /// Number of elements (the product of `dims`; 1 for a scalar).
    public var elementCount: Int { dims.reduce(1, *) }

    /// True when no other value holds this tensor's buffer, so its bytes may be rewritten in place.
    public mutating func hasUniqueBuffer() -> Bool { isKnownUniquelyReferenced(&buffer) }

    /// Replaces the elements with `buffer` (whose size must fit `dims` and `dataType`).
    public mutating func replaceBuffer(_ buffer: TensorBuffer) {
        self.buffer = buffer
        externalSource = nil
    }
}

extension Tensor {
    /// The elements converted to Float (float, float16, bfloat16, double and the integer types).
    public func floatValues() -> [Float]? {
        switch dataType {
        case .float: return buffer.array(of: Float.self)
        case .double: return buffer.array(of: Double.self).map { Float($0) }
        case .float16: return buffer.array(of: UInt16.self).map { Float(Float16(bitPattern: $0)) }
        case .bfloat16: return buffer.array(of: UInt16.self).map { Float(bitPattern: UInt32($0) << 16) }
        default: return int64Values().map { $0.map { Float($0) } }
        }
    }

    /// The elements converted to Int64 (integer and bool types).
    public func int64Values() -> [Int64]? {
        switch dataType {
        case .int64: return buffer.array(of: Int64.self)
        case .int32: return buffer.array(of: Int32.self).map { Int64($0) }
        case .int16: return buffer.array(of: Int16.self).map { Int64($0) }
        case .int8: return buffer.array(of: Int8.self).map { Int64($0) }
        case .uint8, .bool: return buffer.array(of: UInt8.self).map { Int64($0) }
        case .uint16: return buffer.array(of: UInt16.self).map { Int64($0) }
        case .uint32: return buffer.array(of: UInt32.self).map { Int64($0) }
        case .uint64: return buffer.array(of: UInt64.self).map { Int64(bitPattern: $0) }
        default: return nil
        }
    }

    /// True when the two tensors have the same type, shape and bytes.
    public func hasSameValue(as other: Tensor) -> Bool {
        dataType == other.dataType && dims == other.dims && buffer.hasSameBytes(as: other.buffer) && strings == other.strings
    }
}
