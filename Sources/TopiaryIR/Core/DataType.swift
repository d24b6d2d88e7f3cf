/// The element type of a tensor, numbered as ONNX's `TensorProto.DataType`.
public enum DataType: Int32, Sendable, CaseIterable {
    case undefined = 0
    case float = 1
    case uint8 = 2
    case int8 = 3
    case uint16 = 4
    case int16 = 5
    case int32 = 6
    case int64 = 7
    case string = 8
    case bool = 9
    case float16 = 10
    case double = 11
    case uint32 = 12
    case uint64 = 13
    case complex64 = 14
    case complex128 = 15
    case bfloat16 = 16
    case float8e4m3fn = 17
    case float8e4m3fnuz = 18
    case float8e5m2 = 19
    case float8e5m2fnuz = 20
    case uint4 = 21
    case int4 = 22
    case float4e2m1 = 23
    case float8e8m0 = 24
    case uint2 = 25
    case int2 = 26
    case float6e2m3 = 27
    case float6e3m2 = 28

    /// Bits one element takes in `raw_data` (0 for strings and undefined).
    public var bitWidth: Int {
        switch self {
        case .undefined, .string: return 0
        case .uint2, .int2: return 2
        case .uint4, .int4, .float4e2m1: return 4
        case .float6e2m3, .float6e3m2: return 6
        case .uint8, .int8, .bool, .float8e4m3fn, .float8e4m3fnuz, .float8e5m2, .float8e5m2fnuz, .float8e8m0: return 8
        case .uint16, .int16, .float16, .bfloat16: return 16
        case .float, .int32, .uint32: return 32
        case .int64, .uint64, .double, .complex64: return 64
        case .complex128: return 128
        }
    }

    /// Bytes that `count` elements take when packed as in `raw_data`, or nil on overflow.
    public func byteCount(elements count: Int) -> Int? {
        let (bits, overflow) = count.multipliedReportingOverflow(by: bitWidth)
        return overflow ? nil : (bits + 7) / 8
    }

    /// True for the IEEE and brain floating-point types that carry trainable weights.
    public var isFloatingPoint: Bool {
        self == .float || self == .double || self == .float16 || self == .bfloat16
    }

    /// True for the integer types (signed or not, any width), bool excluded.
    public var isInteger: Bool {
        switch self {
        case .uint8, .int8, .uint16, .int16, .int32, .int64, .uint32, .uint64, .uint4, .int4, .uint2, .int2: return true
        default: return false
        }
    }

    /// The ONNX spelling, e.g. `FLOAT16`.
    public var onnxName: String { Self.names[Int(rawValue)] }

    private static let names = [
        "UNDEFINED",
        "FLOAT",
        "UINT8",
        "INT8",
        "UINT16",
        "INT16",
        "INT32",
        "INT64",
        "STRING",
        "BOOL",
        "FLOAT16",
        "DOUBLE",
        "UINT32",
        "UINT64",
        "COMPLEX64",
        "COMPLEX128",
        "BFLOAT16",
        "FLOAT8E4M3FN",
        "FLOAT8E4M3FNUZ",
        "FLOAT8E5M2",
        "FLOAT8E5M2FNUZ",
        "UINT4",
        "INT4",
        "FLOAT4E2M1",
        "FLOAT8E8M0",
        "UINT2",
        "INT2",
        "FLOAT6E2M3",
        "FLOAT6E3M2",
    ]
}

extension DataType: CustomStringConvertible {
    public var description: String { onnxName.lowercased() }
}
