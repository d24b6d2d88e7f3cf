import CONNX
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// A block of bytes (from `topiary_alloc`) holding a tensor's elements in ONNX's little-endian `raw_data`
/// layout. Reference type so that big weights are shared, never copied, between IR values and the
/// protobuf-c structs an export builds; `Tensor` copies it before writing when it is shared.
public final class TensorBuffer: @unchecked Sendable {
    /// Number of bytes.
    public private(set) var count: Int
    /// Start of the bytes; valid for the buffer's lifetime.
    public let base: UnsafeMutableRawPointer

    /// Allocates `count` zeroed bytes.
    public init(zeroedCount count: Int) {
        self.count = count
        guard let p = topiary_calloc(max(count, 1)) else { fatalError("out of memory allocating \(count) bytes") }
        self.base = p
    }

    /// Allocates `count` bytes whose contents the caller must fill.
    public init(uninitializedCount count: Int) {
        self.count = count
        guard let p = topiary_alloc(max(count, 1)) else { fatalError("out of memory allocating \(count) bytes") }
        self.base = p
    }

    /// Takes ownership of `pointer`, which must come from `topiary_alloc` (as every block protobuf-c
    /// allocates during import does) and be freed by nobody else.
    public init(adopting pointer: UnsafeMutableRawPointer, count: Int) {
        self.count = count
        self.base = pointer
    }

    /// Copies `bytes`.
    public convenience init(copying bytes: UnsafeRawBufferPointer) {
        self.init(zeroedCount: bytes.count)
        if let src = bytes.baseAddress, bytes.count > 0 { base.copyMemory(from: src, byteCount: bytes.count) }
    }

    /// Copies the elements of `array`.
    public convenience init<T>(copying array: [T]) {
        self.init(zeroedCount: array.count * MemoryLayout<T>.stride)
        array.withUnsafeBytes { raw in
            if let src = raw.baseAddress, raw.count > 0 { base.copyMemory(from: src, byteCount: raw.count) }
        }
    }

    deinit { topiary_free(base) }

    /// Keeps the first `newCount` bytes; the memory past them stays mapped until
    /// `releaseUnusedPages` or the buffer's end. Only for a buffer that nothing else shares (see
    /// `Tensor.hasUniqueBuffer`).
    public func truncate(to newCount: Int) {
        precondition(newCount >= 0 && newCount <= count, "truncate past the end of a buffer")
        count = newCount
    }

    /// Gives the whole pages past each buffer's bytes back to the system, on a background queue:
    /// unmapping costs about as much as the copy that shrank them, and nothing needs to wait for
    /// it. The buffers are kept alive until it is done.
    public static func releaseUnusedPages(of buffers: [TensorBuffer]) {
        if buffers.isEmpty { return }
        DispatchQueue.global(qos: .utility).async {
            for b in buffers { topiary_shrink(b.base, max(b.count, 1)) }
        }
    }

    /// The bytes, read-only.
    public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: base, count: count) }

    /// A fresh buffer with the same bytes.
    public func copy() -> TensorBuffer { TensorBuffer(copying: bytes) }

    /// The bytes read as `count / stride(T)` values of `T`.
    public func array<T>(of type: T.Type) -> [T] {
        let n = count / MemoryLayout<T>.stride
        return Array(UnsafeBufferPointer(start: base.assumingMemoryBound(to: T.self), count: n))
    }

    /// True when both buffers hold the same bytes.
    public func hasSameBytes(as other: TensorBuffer) -> Bool {
        count == other.count && (count == 0 || memcmp(base, other.base, count) == 0)
    }
}
