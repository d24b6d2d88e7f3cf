#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads tensors stored outside the model file. Locations are relative to the model's folder;
/// absolute paths, `..` components and links that lead out of the folder are refused, and the
/// declared size is checked against the file before anything is allocated.
final class ExternalDataReader {
    let directory: String
    private var files: [String: Int32] = [:]

    init(directory: String) {
        self.directory = directory
    }

    deinit {
        for fd in files.values { close(fd) }
    }

    func read(tensor name: String, entries: [StringPair], expectedBytes: Int) throws -> (TensorBuffer, Tensor.ExternalSource) {
        var location: String?
        var offset = 0
        var length: Int?
        for e in entries {
            switch e.key {
            case "location": location = e.value
            case "offset":
                guard let v = Int(e.value), v >= 0 else { throw IRError.externalData(tensor: name, reason: "bad offset '\(e.value)'") }
                offset = v
            case "length":
                guard let v = Int(e.value), v >= 0 else { throw IRError.externalData(tensor: name, reason: "bad length '\(e.value)'") }
                length = v
            default: continue
            }
        }
        guard let location, !location.isEmpty else { throw IRError.externalData(tensor: name, reason: "no location given") }
        try Self.checkRelative(location, tensor: name)
        let count = length ?? expectedBytes
        guard count == expectedBytes else {
            throw IRError.externalData(tensor: name, reason: "length \(count) does not match the \(expectedBytes) bytes its shape needs")
        }
        let fd = try open(location, tensor: name)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IRError.externalData(tensor: name, reason: "cannot stat '\(location)'") }
        let (end, overflow) = offset.addingReportingOverflow(count)
        guard !overflow, end <= Int(st.st_size) else {
            throw IRError.externalData(tensor: name, reason: "bytes \(offset)..<\(end) lie beyond the end of '\(location)' (\(st.st_size) bytes)")
        }
        let buffer = TensorBuffer(zeroedCount: count)
        var done = 0
        while done < count {
            let n = pread(fd, buffer.base + done, count - done, off_t(offset + done))
            guard n > 0 else { throw IRError.externalData(tensor: name, reason: "read of '\(location)' failed") }
            done += n
        }
        return (buffer, Tensor.ExternalSource(location: location, offset: offset, length: count))
    }

    /// Refuses absolute locations and any `..` component.
    static func checkRelative(_ location: String, tensor name: String) throws {
        if location.hasPrefix("/") || location.hasPrefix("\\") || location.contains(":") {
            throw IRError.externalData(tensor: name, reason: "location '\(location)' is absolute; only paths inside the model's folder are allowed")
        }
        let parts = location.split(whereSeparator: { $0 == "/" || $0 == "\\" })
        if parts.contains("..") {
            throw IRError.externalData(tensor: name, reason: "location '\(location)' leads out of the model's folder")
        }
    }

    private func open(_ location: String, tensor name: String) throws -> Int32 {
        if let fd = files[location] { return fd }
        let path = directory + "/" + location
        // Resolve links: the real file must still be inside the real model folder.
        guard let real = realpath(path, nil) else {
            throw IRError.externalData(tensor: name, reason: "file '\(location)' not found beside the model")
        }
        defer { free(real) }
        guard let realDir = realpath(directory, nil) else { throw IRError.externalData(tensor: name, reason: "cannot resolve the model folder") }
        defer { free(realDir) }
        let r = String(cString: real), d = String(cString: realDir)
        guard r.hasPrefix(d.hasSuffix("/") ? d : d + "/") else {
            throw IRError.externalData(tensor: name, reason: "file '\(location)' resolves outside the model's folder")
        }
        let fd = Glibc.open(real, O_RDONLY)
        guard fd >= 0 else { throw IRError.externalData(tensor: name, reason: "cannot open '\(location)'") }
        files[location] = fd
        return fd
    }
}
