import Foundation

/// An n-dimensional array read from a .npy member or an IDX file, as Float or integer values.
public struct LoadedArray {
    public enum Values {
        case float([Float])
        case integer([Int64])
    }

    public var shape: [Int]
    public var values: Values
    /// The source dtype, for messages ("<f4", "|u1", "ubyte").
    public var dtype: String

    public var count: Int { shape.reduce(1, *) }

    public var floats: [Float] {
        switch values {
        case .float(let f): return f
        case .integer(let i): return i.map { Float($0) }
        }
    }
}

/// NumPy's .npy format: magic, a Python-dict header, then the raw array.
enum NPY {
    static func parse(_ data: [UInt8], path: String, member: String) throws -> LoadedArray {
        guard data.count >= 10, data[0] == 0x93, Array(data[1..<6]) == Array("NUMPY".utf8) else {
            throw DataError(path, "member '\(member)' is not a .npy array")
        }
        let major = data[6]
        let headerLength = major == 1 ? Int(data[8]) | Int(data[9]) << 8 : Int(data[8]) | Int(data[9]) << 8 | Int(data[10]) << 16 | Int(data[11]) << 24
        let start = major == 1 ? 10 : 12
        guard start + headerLength <= data.count else { throw DataError(path, "member '\(member)' has a truncated header") }
        let header = String(decoding: data[start..<(start + headerLength)], as: UTF8.self)
        func field(_ key: String) -> String? {
            guard let r = header.range(of: "'\(key)':") else { return nil }
            return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
        }
        guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'") else { throw DataError(path, "member '\(member)' header has no dtype") }
        let rest = descrField[descrField.index(after: q1)...]
        guard let q2 = rest.firstIndex(of: "'") else { throw DataError(path, "member '\(member)' header is malformed") }
        let descr = String(rest[..<q2])
        if let f = field("fortran_order"), f.hasPrefix("True") { throw DataError(path, "member '\(member)' is Fortran-ordered; save it C-ordered") }
        guard let shapeField = field("shape"), let open = shapeField.firstIndex(of: "("), let close = shapeField.firstIndex(of: ")") else {
            throw DataError(path, "member '\(member)' header has no shape")
        }
        let dims = shapeField[shapeField.index(after: open)..<close].split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let count = dims.reduce(1, *)
        let body = Array(data[(start + headerLength)...])
        func need(_ width: Int) throws {
            guard body.count >= count * width else {
                throw DataError(path, "member '\(member)' declares \(dims) of \(descr) (\(count * width) bytes) but holds \(body.count)")
            }
        }
        func read<T>(_ type: T.Type) -> [T] {
            body.withUnsafeBytes { raw in (0..<count).map { raw.loadUnaligned(fromByteOffset: $0 * MemoryLayout<T>.size, as: T.self) } }
        }
        let values: LoadedArray.Values
        switch descr {
        case "<f4": try need(4); values = .float(read(Float.self))
        case "<f8": try need(8); values = .float(read(Double.self).map { Float($0) })
        case "|u1", "<u1": try need(1); values = .integer(read(UInt8.self).map { Int64($0) })
        case "|i1", "<i1": try need(1); values = .integer(read(Int8.self).map { Int64($0) })
        case "<i4": try need(4); values = .integer(read(Int32.self).map { Int64($0) })
        case "<i8": try need(8); values = .integer(read(Int64.self))
        case "<u4": try need(4); values = .integer(read(UInt32.self).map { Int64($0) })
        default: throw DataError(path, "member '\(member)' has dtype \(descr); supported: float32/64, uint8, int8, int32, int64")
        }
        return LoadedArray(shape: dims, values: values, dtype: descr)
    }
}

/// The IDX format of MNIST-style datasets, optionally gzip-compressed.
enum IDX {
    static func parse(_ data: [UInt8], path: String) throws -> LoadedArray {
        guard data.count >= 4, data[0] == 0, data[1] == 0 else { throw DataError(path, "not an IDX file (bad magic)") }
        let code = data[2], rank = Int(data[3])
        guard data.count >= 4 + 4 * rank else { throw DataError(path, "IDX header truncated") }
        var dims: [Int] = []
        for k in 0..<rank {
            let o = 4 + 4 * k
            dims.append(Int(data[o]) << 24 | Int(data[o + 1]) << 16 | Int(data[o + 2]) << 8 | Int(data[o + 3]))
        }
        let count = dims.reduce(1, *)
        let body = data[(4 + 4 * rank)...]
        switch code {
        case 0x08:
            guard body.count >= count else { throw DataError(path, "declares \(dims) but holds \(body.count) bytes") }
            return LoadedArray(shape: dims, values: .integer(body.prefix(count).map { Int64($0) }), dtype: "ubyte")
        case 0x0D:
            guard body.count >= count * 4 else { throw DataError(path, "declares \(dims) floats but holds \(body.count) bytes") }
            let b = Array(body)
            let floats = (0..<count).map { i -> Float in
                let o = i * 4
                return Float(bitPattern: UInt32(b[o]) << 24 | UInt32(b[o + 1]) << 16 | UInt32(b[o + 2]) << 8 | UInt32(b[o + 3]))
            }
            return LoadedArray(shape: dims, values: .float(floats), dtype: "float32")
        default:
            throw DataError(path, "IDX element type 0x\(String(code, radix: 16)) is not supported (ubyte and float only)")
        }
    }
}

/// Reading and writing single .npy arrays (the `infer` command's input and output).
public enum ArrayIO {
    public static func readNPY(_ path: String) throws -> LoadedArray {
        guard let data = FileManager.default.contents(atPath: path) else { throw DataError(path, "cannot read the file") }
        return try NPY.parse([UInt8](data), path: path, member: (path as NSString).lastPathComponent)
    }

    /// Writes float32 `values` of `shape` as a .npy file, atomically.
    public static func writeNPY(_ path: String, shape: [Int], values: [Float]) throws {
        var header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + shape.map(String.init).joined(separator: ", ") + (shape.count == 1 ? ",), }" : "), }")
        while (10 + header.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        var data = Data([0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(header.count & 0xff), UInt8(header.count >> 8)])
        data.append(Data(header.utf8))
        values.withUnsafeBytes { data.append(contentsOf: $0) }
        try data.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
