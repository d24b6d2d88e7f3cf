import CONNX
#if canImport(Glibc)
import Glibc
#endif

/// Owns every C allocation an export makes (message structs, strings, arrays) and the IR buffers
/// those structs point into, and frees them all at once when the export is done.
final class CArena {
    private var blocks: [UnsafeMutableRawPointer] = []
    private var cleanups: [() -> Void] = []
    private var retained: [AnyObject] = []

    deinit {
        for c in cleanups { c() }
        for b in blocks { free(b) }
    }

    /// `count` zeroed values of `T`.
    func alloc<T>(_ type: T.Type, count: Int = 1) -> UnsafeMutablePointer<T> {
        guard let p = calloc(max(count, 1), MemoryLayout<T>.stride) else { fatalError("out of memory") }
        blocks.append(p)
        return p.assumingMemoryBound(to: T.self)
    }

    /// A message struct initialised by protobuf-c's generated `init` function.
    func message<T>(_ initialise: (UnsafeMutablePointer<T>) -> Void) -> UnsafeMutablePointer<T> {
        let p = alloc(T.self)
        initialise(p)
        return p
    }

    /// A C copy of `s`, or NULL for "" (absent in proto2).
    func string(_ s: String) -> UnsafeMutablePointer<CChar>? {
        s.isEmpty ? nil : required(s)
    }

    /// A C copy of `s`, even when empty.
    func required(_ s: String) -> UnsafeMutablePointer<CChar> {
        let utf8 = Array(s.utf8)
        let p = alloc(CChar.self, count: utf8.count + 1)
        utf8.withUnsafeBufferPointer { src in
            UnsafeMutableRawPointer(p).copyMemory(from: src.baseAddress!, byteCount: utf8.count)
        }
        return p
    }

    /// A C array of C strings.
    func strings(_ list: [String]) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? {
        guard !list.isEmpty else { return nil }
        let p = alloc(UnsafeMutablePointer<CChar>?.self, count: list.count)
        for (i, s) in list.enumerated() { p[i] = required(s) }
        return p
    }

    /// A C array of scalars.
    func array<T>(_ values: [T]) -> UnsafeMutablePointer<T>? {
        guard !values.isEmpty else { return nil }
        let p = alloc(T.self, count: values.count)
        values.withUnsafeBufferPointer { p.update(from: $0.baseAddress!, count: values.count) }
        return p
    }

    /// A C array of message pointers.
    func pointers<T>(_ items: [UnsafeMutablePointer<T>]) -> UnsafeMutablePointer<UnsafeMutablePointer<T>?>? {
        guard !items.isEmpty else { return nil }
        let p = alloc(UnsafeMutablePointer<T>?.self, count: items.count)
        for (i, m) in items.enumerated() { p[i] = m }
        return p
    }

    /// Binary data pointing at a copy of `bytes`.
    func binary(_ bytes: [UInt8]) -> ProtobufCBinaryData {
        guard !bytes.isEmpty, let p = array(bytes) else { return ProtobufCBinaryData(len: 0, data: nil) }
        return ProtobufCBinaryData(len: bytes.count, data: p)
    }

    /// Keeps `object` alive until the arena is freed (buffers that C structs point into).
    func retain(_ object: AnyObject) { retained.append(object) }

    /// Runs `cleanup` when the arena is freed (messages unpacked by protobuf-c).
    func onFree(_ cleanup: @escaping () -> Void) { cleanups.append(cleanup) }

    /// Attaches unknown fields to a message before it is packed.
    func attachUnknown<T>(_ fields: [UnknownField], to message: UnsafeMutablePointer<T>) {
        guard !fields.isEmpty else { return }
        let array = alloc(ProtobufCMessageUnknownField.self, count: fields.count)
        for (i, f) in fields.enumerated() {
            let bytes = binary(f.data)
            array[i] = ProtobufCMessageUnknownField(tag: f.tag, wire_type: ProtobufCWireType(rawValue: f.wireType), len: bytes.len, data: bytes.data)
        }
        message.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { base in
            base.pointee.n_unknown_fields = UInt32(fields.count)
            base.pointee.unknown_fields = array
        }
    }

    /// Key/value pairs as C messages.
    func pairs(_ list: [StringPair]) -> (Int, UnsafeMutablePointer<UnsafeMutablePointer<Onnx__StringStringEntryProto>?>?) {
        let items = list.map { pair -> UnsafeMutablePointer<Onnx__StringStringEntryProto> in
            let m: UnsafeMutablePointer<Onnx__StringStringEntryProto> = message(onnx__string_string_entry_proto__init)
            m.pointee.key = required(pair.key)
            m.pointee.value = required(pair.value)
            return m
        }
        return (items.count, pointers(items))
    }
}
