import CONNX
#if canImport(Glibc)
import Glibc
#endif

/// Where the tensors of a saved model go.
public enum ExternalDataPolicy: Sendable, Equatable {
    /// Tensors that were read from external data go to `<model file name>.data` beside the output;
    /// everything else is inline.
    case preserve
    /// Every tensor inside the model file.
    case inline
    /// Tensors of at least `threshold` bytes go to `file`, a plain file name in the model's folder.
    case file(String, threshold: Int)
}

/// Reading and writing ONNX files.
public enum ModelFile {
    /// Reads the model at `path`, resolving external data beside it, and validates it (known
    /// operators, no cycles, every input defined). Errors are `FileError`s that name the file.
    public static func load(_ path: String, validate: Bool = true) throws -> Model {
        do {
            let file = try MappedFile(path)
            let dir = directory(of: path)
            let model = try decode(file.bytes, externalDataDirectory: dir)
            if validate { try ModelValidator.validate(model) }
            return model
        } catch let e as FileError {
            throw e
        } catch {
            throw FileError(path: path, error: error)
        }
    }

    /// Decodes serialized `ModelProto` bytes. External data, if any, is looked up in
    /// `externalDataDirectory`.
    public static func decode(_ bytes: UnsafeRawBufferPointer, externalDataDirectory: String? = nil) throws -> Model {
        guard bytes.count > 0 else { throw IRError.notAModel("the file is empty") }
        let allocator = topiary_protobuf_allocator()
        guard let proto = onnx__model_proto__unpack(allocator, bytes.count, bytes.baseAddress?.assumingMemoryBound(to: UInt8.self)) else {
            throw IRError.notAModel("the protobuf encoding is broken (truncated file, or not an ONNX model)")
        }
        defer { onnx__model_proto__free_unpacked(proto, allocator) }
        guard proto.pointee.has_ir_version != 0 else { throw IRError.notAModel("no ir_version field: this is not an ONNX ModelProto") }
        let importer = OnnxImporter(externalData: externalDataDirectory.map(ExternalDataReader.init))
        return try importer.model(proto)
    }

    /// Serializes `model` to bytes with every tensor inline.
    public static func encode(_ model: Model) throws -> [UInt8] {
        let arena = CArena()
        let proto = try OnnxExporter(arena: arena, externalData: nil).model(model)
        let size = onnx__model_proto__get_packed_size(proto)
        var out = [UInt8](repeating: 0, count: size)
        _ = out.withUnsafeMutableBufferPointer { onnx__model_proto__pack(proto, $0.baseAddress) }
        return out
    }

    /// Writes `model` to `path` atomically: everything goes to temporary files in the same
    /// folder, renamed into place only when complete. An existing file at `path` is replaced only
    /// on success; nothing is left behind on failure.
    public static func save(_ model: Model, to path: String, externalData policy: ExternalDataPolicy = .preserve) throws {
        do {
            try saveUnwrapped(model, to: path, policy: policy)
        } catch {
            throw FileError(path: path, error: error)
        }
    }

    private static func saveUnwrapped(_ model: Model, to path: String, policy: ExternalDataPolicy) throws {
        let dir = directory(of: path)
        var st = stat()
        guard stat(dir, &st) == 0, (st.st_mode & S_IFMT) == S_IFDIR else {
            throw IRError.io("the output folder '\(dir)' does not exist")
        }
        let base = String(path.split(separator: "/").last ?? Substring(path))
        let token = "\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let tmpModel = "\(dir)/.\(base).tmp-\(token)"
        var temps = [tmpModel]
        defer { for t in temps { unlink(t) } }

        var writer: ExternalDataWriter?
        var dataTarget: (tmp: String, final: String)?
        switch policy {
        case .inline:
            break
        case .preserve:
            if Self.hasExternalTensors(model.graph) {
                let name = base + ".data"
                let tmp = "\(dir)/.\(name).tmp-\(token)"
                writer = try ExternalDataWriter(path: tmp, location: name) { $0.externalSource != nil }
                dataTarget = (tmp, "\(dir)/\(name)")
            }
        case .file(let name, let threshold):
            try ExternalDataReader.checkRelative(name, tensor: "(output)")
            guard !name.contains("/") else { throw IRError.io("the external data file '\(name)' must be a plain file name in the model's folder") }
            let tmp = "\(dir)/.\(name).tmp-\(token)"
            writer = try ExternalDataWriter(path: tmp, location: name) { $0.buffer.count >= threshold }
            dataTarget = (tmp, "\(dir)/\(name)")
        }
        if let dataTarget { temps.append(dataTarget.tmp) }

        let arena = CArena()
        let proto = try OnnxExporter(arena: arena, externalData: writer).model(model)
        try writer?.finish()
        let size = onnx__model_proto__get_packed_size(proto)
        guard size < Int(Int32.max) else {
            throw IRError.unsupported("the model is \(size) bytes, over protobuf's 2 GB limit; save with external data (topiary convert --external-data FILE)")
        }
        try writeFile(tmpModel) { fd in
            proto.withMemoryRebound(to: ProtobufCMessage.self, capacity: 1) { topiary_pack_to_fd($0, fd) }
        }
        if let dataTarget {
            guard rename(dataTarget.tmp, dataTarget.final) == 0 else { throw IRError.io("cannot move external data into place: \(String(cString: strerror(errno)))") }
        }
        guard rename(tmpModel, path) == 0 else { throw IRError.io("cannot move the model into place: \(String(cString: strerror(errno)))") }
    }

    static func hasExternalTensors(_ graph: Graph) -> Bool {
        graph.initializers.contains { $0.externalSource != nil }
    }

    /// The folder of `path` ("." for a bare file name).
    static func directory(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "." }
        let d = String(path[..<slash])
        return d.isEmpty ? "/" : d
    }

    /// Creates `path` and lets `body` write to its descriptor; `body` returns 0 or an errno value.
    static func writeFile(_ path: String, _ body: (Int32) -> Int32) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw IRError.io("cannot create '\(path)': \(String(cString: strerror(errno)))") }
        let error = body(fd)
        let closed = close(fd)
        guard error == 0 else { throw IRError.io("write failed: \(String(cString: strerror(error)))") }
        guard closed == 0 else { throw IRError.io("write failed: \(String(cString: strerror(errno)))") }
    }
}
