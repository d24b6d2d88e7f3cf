import CONNX

/// The typed repeated fields of `TensorProto` (`float_data`, `int32_data`, …): which one holds each
/// data type, and conversion between them and the IR's raw little-endian bytes.
enum TypedFields {
    /// The field that holds elements of a data type.
    enum Field {
        case float, double, int32, int64, uint64, string
    }

    static func field(for type: DataType) -> Field {
        switch type {
        case .float, .complex64: return .float
        case .double, .complex128: return .double
        case .int64: return .int64
        case .uint32, .uint64: return .uint64
        case .string: return .string
        default: return .int32
        }
    }

    /// Values the field holds for `elements` elements that pack into `bytes` bytes.
    static func fieldCount(for type: DataType, elements: Int, bytes: Int) -> Int {
        switch type {
        case .complex64, .complex128: return elements * 2
        case .uint4, .int4, .float4e2m1, .uint2, .int2, .float6e2m3, .float6e3m2: return bytes
        default: return elements
        }
    }

    static func decode(_ t: Onnx__TensorProto, dataType: DataType, elements: Int, expectedBytes: Int, name: String) throws -> TensorBuffer {
        let want = fieldCount(for: dataType, elements: elements, bytes: expectedBytes)
        func check(_ have: Int, _ field: String) throws {
            guard have == want else {
                throw IRError.badTensor(name: name, reason: "declares \(elements) elements of \(dataType) but \(field) holds \(have) values")
            }
        }
        let out = TensorBuffer(zeroedCount: expectedBytes)
        switch field(for: dataType) {
        case .float:
            try check(t.n_float_data, "float_data")
            if want > 0 { out.base.copyMemory(from: t.float_data, byteCount: want * 4) }
        case .double:
            try check(t.n_double_data, "double_data")
            if want > 0 { out.base.copyMemory(from: t.double_data, byteCount: want * 8) }
        case .int64:
            try check(t.n_int64_data, "int64_data")
            if want > 0 { out.base.copyMemory(from: t.int64_data, byteCount: want * 8) }
        case .uint64:
            try check(t.n_uint64_data, "uint64_data")
            if dataType == .uint64 {
                if want > 0 { out.base.copyMemory(from: t.uint64_data, byteCount: want * 8) }
            } else {
                let dst = out.base.assumingMemoryBound(to: UInt32.self)
                for i in 0..<want { dst[i] = UInt32(truncatingIfNeeded: t.uint64_data[i]) }
            }
        case .int32:
            try check(t.n_int32_data, "int32_data")
            let width = dataType.bitWidth >= 8 ? dataType.bitWidth / 8 : 1
            let src = t.int32_data
            switch width {
            case 4:
                if want > 0 { out.base.copyMemory(from: src!, byteCount: want * 4) }
            case 2:
                let dst = out.base.assumingMemoryBound(to: UInt16.self)
                for i in 0..<want { dst[i] = UInt16(truncatingIfNeeded: src![i]) }
            default:
                let dst = out.base.assumingMemoryBound(to: UInt8.self)
                for i in 0..<want { dst[i] = UInt8(truncatingIfNeeded: src![i]) }
            }
        case .string:
            throw IRError.badTensor(name: name, reason: "string data in a non-string tensor")
        }
        return out
    }
}
