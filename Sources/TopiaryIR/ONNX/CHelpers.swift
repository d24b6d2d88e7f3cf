import CONNX

/// Swift views of protobuf-c's C arrays and strings, shared by import and export.
enum C {
    /// A C string, or "" for NULL.
    @inline(__always)
    static func string(_ p: UnsafeMutablePointer<CChar>?) -> String {
        guard let p else { return "" }
        return String(cString: p)
    }

    /// The non-null pointers of a C array of message pointers.
    @inline(__always)
    static func messages<T>(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<T>?>?) -> [UnsafeMutablePointer<T>] {
        guard let p, n > 0 else { return [] }
        var out: [UnsafeMutablePointer<T>] = []
        out.reserveCapacity(n)
        for i in 0..<n { if let m = p[i] { out.append(m) } }
        return out
    }

    /// A C array of C strings.
    static func strings(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> [String] {
        guard let p, n > 0 else { return [] }
        return (0..<n).map { string(p[$0]) }
    }

    /// A C array of scalars.
    @inline(__always)
    static func array<T>(_ n: Int, _ p: UnsafeMutablePointer<T>?) -> [T] {
        guard let p, n > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }

    /// Bytes of a `ProtobufCBinaryData`.
    static func bytes(_ b: ProtobufCBinaryData) -> [UInt8] {
        guard let d = b.data, b.len > 0 else { return [] }
        return Array(UnsafeBufferPointer(start: d, count: b.len))
    }

    /// Key/value pairs.
    static func pairs(_ n: Int, _ p: UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?) -> [StringPair] {
        messages(n, p).map { StringPair(string($0.pointee.key), string($0.pointee.value)) }
    }

    /// Unknown fields protobuf-c kept on a message.
    static func unknown<T>(_ message: UnsafeMutablePointer<T>) -> [UnknownField] {
        message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { base in
            let n = Int(base.pointee.n_unknown_fields)
            guard n > 0, let fields = base.pointee.unknown_fields else { return [] }
            return (0..<n).map { i in
                let f = fields[i]
                return UnknownField(tag: f.tag, wireType: f.wire_type.rawValue, data: f.data.map { Array(UnsafeBufferPointer(start: $0, count: f.len)) } ?? [])
            }
        }
    }

    /// The serialized bytes of any message.
    static func pack<T>(_ message: UnsafeMutablePointer<T>) -> [UInt8] {
        message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { base in
            let size = protobuf_c_message_get_packed_size(base)
            var out = [UInt8](repeating: 0, count: size)
            _ = out.withUnsafeMutableBufferPointer { protobuf_c_message_pack(base, $0.baseAddress) }
            return out
        }
    }
}
