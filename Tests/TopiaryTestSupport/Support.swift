import Testing
import TopiaryIR

/// Small builders and checks shared by every test target.
public enum GraphBuilder {
    /// A float tensor input or output with the given dims (Int for numbers, String for symbols).
    public static func value(_ name: String, _ dims: [Any], type: DataType = .float) -> ValueInfo {
        let shape: [Dim] = dims.map { d in
            if let n = d as? Int { return .value(n) }
            if let s = d as? String { return .param(s) }
            return .unknown
        }
        return ValueInfo(name: name, tensor: TensorType(type, shape))
    }

    /// A model over `nodes` with opset `opset`.
    public static func model(_ nodes: [Node], inputs: [ValueInfo], outputs: [String], initializers: [Tensor] = [], opset: Int = 17) -> Model {
        let graph = Graph(name: "test", nodes: nodes, inputs: inputs,
                          outputs: outputs.map { ValueInfo(name: $0, type: .none) }, initializers: initializers)
        return Model(irVersion: 8, opsetImports: [OpsetImport(domain: "", version: opset)], graph: graph)
    }

    /// A node with integer-list and integer attributes.
    public static func node(_ op: String, _ inputs: [String], _ outputs: [String], ints: [String: [Int]] = [:], int: [String: Int] = [:]) -> Node {
        var attrs = ints.sorted { $0.key < $1.key }.map { Attribute(name: $0.key, value: .ints($0.value.map { Int64($0) })) }
        attrs += int.sorted { $0.key < $1.key }.map { Attribute(name: $0.key, value: .int(Int64($0.value))) }
        return Node(name: outputs.first ?? op, opType: op, inputs: inputs, outputs: outputs, attributes: attrs)
    }
}

/// Encodes `model`, decodes it again and checks the result encodes to the same bytes.
public func assertRoundTrips(_ model: Model, sourceLocation: SourceLocation = #_sourceLocation) throws -> Model {
    let bytes = try ModelFile.encode(model)
    let back = try bytes.withUnsafeBytes { try ModelFile.decode($0) }
    #expect(try ModelFile.encode(back) == bytes, "re-encoding changed the bytes", sourceLocation: sourceLocation)
    return back
}

/// The inferred shape of `name` as text, e.g. "[batch,16,4,4]".
public func inferredShape(_ model: Model, _ name: String) throws -> String {
    let table = try ShapeInference.run(model)
    guard let shape = table.type(of: name)?.shape else { return "?" }
    return "[" + shape.map(\.description).joined(separator: ",") + "]"
}
