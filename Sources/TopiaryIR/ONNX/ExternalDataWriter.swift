#if canImport(Glibc)
import Glibc
#endif

/// Appends tensors to an external data file during an export, and says which tensors go there.
final class ExternalDataWriter {
    /// The location written into the model: a file name in the model's folder.
    let location: String
    private let file: UnsafeMutablePointer<FILE>
    private var offset = 0
    private let wants: (Tensor) -> Bool

    init(path: String, location: String, wants: @escaping (Tensor) -> Bool) throws {
        guard let f = fopen(path, "wb") else { throw IRError.io("cannot create external data file '\(path)': \(String(cString: strerror(errno)))") }
        self.file = f
        self.location = location
        self.wants = wants
    }

    deinit { fclose(file) }

    func wantsExternal(_ tensor: Tensor) -> Bool { tensor.dataType != .string && tensor.segment == nil && wants(tensor) }

    /// Writes the tensor's bytes and returns the `external_data` entries that point at them.
    func append(_ tensor: Tensor) throws -> [StringPair] {
        let n = tensor.buffer.count
        if n > 0, fwrite(tensor.buffer.base, 1, n, file) != n {
            throw IRError.io("writing external data for '\(tensor.name)' failed: \(String(cString: strerror(errno)))")
        }
        defer { offset += n }
        return [StringPair("location", location), StringPair("offset", String(offset)), StringPair("length", String(n))]
    }

    /// Flushes the file to the OS.
    func finish() throws {
        guard fflush(file) == 0 else { throw IRError.io("writing external data failed: \(String(cString: strerror(errno)))") }
    }
}
