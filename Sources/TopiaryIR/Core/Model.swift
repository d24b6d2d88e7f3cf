/// An operator set a model imports (ONNX `OperatorSetIdProto`).
public struct OpsetImport: Equatable, Sendable {
    public var domain: String
    public var version: Int
    public init(domain: String, version: Int) {
        self.domain = domain
        self.version = version
    }
}

/// A whole model (ONNX `ModelProto`): the graph plus everything around it. Fields the IR does not
/// interpret (functions, training info, device configurations) are kept serialized and written back
/// unchanged.
public final class Model {
    public var irVersion: Int
    public var opsetImports: [OpsetImport]
    public var producerName: String = ""
    public var producerVersion: String = ""
    public var domain: String = ""
    public var modelVersion: Int?
    public var docString: String = ""
    public var graph: Graph
    public var metadataProps: [StringPair] = []
    public var trainingInfo: [OpaqueMessage] = []
    public var functions: [OpaqueMessage] = []
    public var configurations: [OpaqueMessage] = []
    /// Fields outside the schema, written back unchanged.
    public var unknownFields: [UnknownField] = []

    public init(irVersion: Int, opsetImports: [OpsetImport], graph: Graph) {
        self.irVersion = irVersion
        self.opsetImports = opsetImports
        self.graph = graph
    }

    /// Version of the default ONNX operator set the model imports (0 when none).
    public var defaultOpset: Int {
        opsetImports.first { $0.domain.isEmpty || $0.domain == "ai.onnx" }?.version ?? 0
    }
}
