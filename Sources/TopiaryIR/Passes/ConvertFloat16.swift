/// Converts a float32 model to float16 weights and activations, keeping float32 inputs and
/// outputs: a `Cast` after each float input and before each float output. Inputs that ONNX
/// requires in float32 (Resize and Upsample scales) stay float32.
public enum ConvertFloat16 {
    public static func run(_ model: Model) throws {
        let graph = model.graph
        if graph.nodes.contains(where: { node in node.attributes.contains { !$0.subgraphs.isEmpty } }) {
            throw IRError.unsupported("float16 conversion of models with subgraphs (If, Loop, Scan)")
        }
        let keepFloat32 = Set(graph.nodes.compactMap { n -> String? in
            guard n.opType == "Resize" || n.opType == "Upsample" else { return nil }
            return n.input(n.opType == "Upsample" || model.defaultOpset < 11 ? 1 : 2)
        })
        for i in graph.initializers.indices where graph.initializers[i].dataType == .float && !keepFloat32.contains(graph.initializers[i].name) {
            graph.initializers[i] = toHalf(graph.initializers[i])
        }
        for i in graph.nodes.indices {
            var node = graph.nodes[i]
            switch node.opType {
            case "Constant" where !keepFloat32.contains(node.outputs[0]):
                if let t = ConstantValue.tensor(of: node), t.dataType == .float {
                    node.attributes = [Attribute(name: "value", value: .tensor(toHalf(t)))]
                }
            case "ConstantOfShape":
                if let t = node.attribute("value")?.tensor, t.dataType == .float { node.setAttribute("value", .tensor(toHalf(t))) }
            case "Cast":
                if node.int("to", default: 0) == Int(DataType.float.rawValue) { node.setAttribute("to", .int(Int64(DataType.float16.rawValue))) }
            case "EyeLike", "RandomNormalLike", "RandomUniformLike", "Multinomial", "RandomNormal", "RandomUniform":
                if node.int("dtype", default: 1) == Int(DataType.float.rawValue) { node.setAttribute("dtype", .int(Int64(DataType.float16.rawValue))) }
            default:
                break
            }
            graph.nodes[i] = node
        }
        let inits = Set(graph.initializers.map(\.name))
        var names = UniqueNames(graph)
        var prologue: [Node] = []
        for input in graph.inputs where !inits.contains(input.name) && input.type.tensorType?.elemType == .float {
            let half = names.make(input.name + "_fp16")
            for k in graph.nodes.indices {
                graph.nodes[k].inputs = graph.nodes[k].inputs.map { $0 == input.name ? half : $0 }
            }
            prologue.append(Node(name: half + "_cast", opType: "Cast", inputs: [input.name], outputs: [half],
                                 attributes: [Attribute(name: "to", value: .int(Int64(DataType.float16.rawValue)))]))
        }
        var epilogue: [Node] = []
        for output in graph.outputs where output.type.tensorType?.elemType == .float {
            let half = names.make(output.name + "_fp16")
            for k in graph.nodes.indices {
                graph.nodes[k].outputs = graph.nodes[k].outputs.map { $0 == output.name ? half : $0 }
                graph.nodes[k].inputs = graph.nodes[k].inputs.map { $0 == output.name ? half : $0 }
            }
            epilogue.append(Node(name: output.name + "_cast", opType: "Cast", inputs: [half], outputs: [output.name],
                                 attributes: [Attribute(name: "to", value: .int(Int64(DataType.float.rawValue)))]))
        }
        graph.nodes = prologue + graph.nodes + epilogue
        for i in graph.valueInfo.indices {
            if case .tensor(var t, let dd, let d) = graph.valueInfo[i].type, t.elemType == .float, !keepFloat32.contains(graph.valueInfo[i].name) {
                t.elemType = .float16
                graph.valueInfo[i].type = .tensor(t, dimDenotations: dd, denotation: d)
            }
        }
    }

    static func toHalf(_ t: Tensor) -> Tensor {
        let values = t.floatValues() ?? []
        let bits = values.map { Float16($0).bitPattern }
        var out = Tensor(name: t.name, dataType: .float16, dims: t.dims, buffer: TensorBuffer(copying: bits))
        out.docString = t.docString
        out.metadataProps = t.metadataProps
        return out
    }
}
