/// One operator application (ONNX `NodeProto`). Inputs and outputs are value names; an empty
/// input name is an omitted optional input.
public struct Node {
    public var name: String
    public var opType: String
    public var domain: String = ""
    public var inputs: [String]
    public var outputs: [String]
    public var attributes: [Attribute] = []

    struct Rare: RareDefaults {
        var overload = ""
        var docString = ""
        var metadataProps: [StringPair] = []
        var deviceConfigurations: [OpaqueMessage] = []
        var unknownFields: [UnknownField] = []
    }
    private var rare = RareFields<Rare>()

    public var overload: String {
        get { rare[\.overload] }
        set { rare.set(\.overload, newValue, empty: newValue.isEmpty) }
    }
    public var docString: String {
        get { rare[\.docString] }
        set { rare.set(\.docString, newValue, empty: newValue.isEmpty) }
    }
    public var metadataProps: [StringPair] {
        get { rare[\.metadataProps] }
        set { rare.set(\.metadataProps, newValue, empty: newValue.isEmpty) }
    }
    public var deviceConfigurations: [OpaqueMessage] {
        get { rare[\.deviceConfigurations] }
        set { rare.set(\.deviceConfigurations, newValue, empty: newValue.isEmpty) }
    }
    /// Fields outside the schema, written back unchanged.
    public var unknownFields: [UnknownField] {
        get { rare[\.unknownFields] }
        set { rare.set(\.unknownFields, newValue, empty: newValue.isEmpty) }
    }

    public init(name: String, opType: String, domain: String = "", inputs: [String], outputs: [String], attributes: [Attribute] = []) {
        self.name = name
        self.opType = opType
        self.domain = domain
        self.inputs = inputs
        self.outputs = outputs
        self.attributes = attributes
    }

    /// True for the default ONNX domain ("" or "ai.onnx").
    public var isDefaultDomain: Bool { domain.isEmpty || domain == "ai.onnx" }

    /// The attribute called `name`.
    public func attribute(_ name: String) -> Attribute? { attributes.first { $0.name == name } }

    /// Integer attribute `name`, or `default`.
    public func int(_ name: String, default d: Int) -> Int {
        for a in attributes where a.name == name {
            if case .int(let v) = a.value { return Int(v) }
        }
        return d
    }

    /// Integer-list attribute `name`, or nil.
    public func ints(_ name: String) -> [Int]? { attribute(name)?.ints.map { $0.map { Int($0) } } }

    /// Float attribute `name`, or `default`.
    public func float(_ name: String, default d: Float) -> Float { attribute(name)?.float ?? d }

    /// String attribute `name`, or `default`.
    public func string(_ name: String, default d: String) -> String { attribute(name)?.string ?? d }

    /// The input at `index`, or nil when absent or omitted ("").
    public func input(_ index: Int) -> String? {
        index < inputs.count && !inputs[index].isEmpty ? inputs[index] : nil
    }

    /// A label for messages: the node's name, or its op type and first output.
    public var label: String { name.isEmpty ? "\(opType)(\(outputs.first ?? ""))" : name }

    /// Sets attribute `name`, replacing any earlier value.
    public mutating func setAttribute(_ name: String, _ value: Attribute.Value) {
        if let i = attributes.firstIndex(where: { $0.name == name }) {
            attributes[i].value = value
        } else {
            attributes.append(Attribute(name: name, value: value))
        }
    }
}
