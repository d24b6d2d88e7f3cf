import CONNX

/// Turns an unpacked protobuf-c `ModelProto` into the IR. Raw tensor bytes are taken over from the
/// protobuf-c structs (not copied), so the caller frees the message only after import returns.
struct OnnxImporter {
    let externalData: ExternalDataReader?

    func model(_ m: UnsafeMutablePointer<Onnx__ModelProto>) throws -> Model {
        let p = m.pointee
        guard let g = p.graph else { throw IRError.invalid("the model has no graph") }
        let opsets = C.messages(p.n_opset_import, p.opset_import).map {
            OpsetImport(domain: C.string($0.pointee.domain), version: Int($0.pointee.version))
        }
        let model = Model(irVersion: Int(p.ir_version), opsetImports: opsets, graph: try graph(g))
        model.producerName = C.string(p.producer_name)
        model.producerVersion = C.string(p.producer_version)
        model.domain = C.string(p.domain)
        model.modelVersion = p.has_model_version != 0 ? Int(p.model_version) : nil
        model.docString = C.string(p.doc_string)
        model.metadataProps = C.pairs(p.n_metadata_props, p.metadata_props)
        model.trainingInfo = C.messages(p.n_training_info, p.training_info).map { OpaqueMessage(kind: .trainingInfo, bytes: C.pack($0)) }
        model.functions = C.messages(p.n_functions, p.functions).map { OpaqueMessage(kind: .function, bytes: C.pack($0)) }
        model.configurations = C.messages(p.n_configuration, p.configuration).map { OpaqueMessage(kind: .deviceConfiguration, bytes: C.pack($0)) }
        model.unknownFields = C.unknown(m)
        return model
    }

    func graph(_ g: UnsafeMutablePointer<Onnx__GraphProto>) throws -> Graph {
        let p = g.pointee
        let graph = Graph(
            name: C.string(p.name),
            nodes: try C.messages(p.n_node, p.node).map(node),
            inputs: C.messages(p.n_input, p.input).map(valueInfo),
            outputs: C.messages(p.n_output, p.output).map(valueInfo),
            initializers: try C.messages(p.n_initializer, p.initializer).map(tensor)
        )
        graph.docString = C.string(p.doc_string)
        graph.valueInfo = C.messages(p.n_value_info, p.value_info).map(valueInfo)
        graph.sparseInitializers = C.messages(p.n_sparse_initializer, p.sparse_initializer).map { OpaqueMessage(kind: .sparseTensor, bytes: C.pack($0)) }
        graph.quantizationAnnotations = C.messages(p.n_quantization_annotation, p.quantization_annotation).map { OpaqueMessage(kind: .tensorAnnotation, bytes: C.pack($0)) }
        graph.metadataProps = C.pairs(p.n_metadata_props, p.metadata_props)
        graph.unknownFields = C.unknown(g)
        return graph
    }

    func node(_ n: UnsafeMutablePointer<Onnx__NodeProto>) throws -> Node {
        let p = n.pointee
        var node = Node(
            name: C.string(p.name), opType: C.string(p.op_type), domain: C.string(p.domain),
            inputs: C.strings(p.n_input, p.input), outputs: C.strings(p.n_output, p.output),
            attributes: try C.messages(p.n_attribute, p.attribute).map(attribute)
        )
        node.overload = C.string(p.overload)
        node.docString = C.string(p.doc_string)
        node.metadataProps = C.pairs(p.n_metadata_props, p.metadata_props)
        node.deviceConfigurations = C.messages(p.n_device_configurations, p.device_configurations).map { OpaqueMessage(kind: .nodeDeviceConfiguration, bytes: C.pack($0)) }
        node.unknownFields = C.unknown(n)
        return node
    }

    func attribute(_ a: UnsafeMutablePointer<Onnx__AttributeProto>) throws -> Attribute {
        let p = a.pointee
        let name = C.string(p.name)
        let value: Attribute.Value
        switch p.type {
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT: value = .float(p.f)
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT: value = .int(p.i)
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING: value = .string(C.bytes(p.s))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR:
            guard let t = p.t else { throw IRError.invalid("attribute '\(name)' of type TENSOR has no tensor") }
            value = .tensor(try tensor(t))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH:
            guard let g = p.g else { throw IRError.invalid("attribute '\(name)' of type GRAPH has no graph") }
            value = .graph(try graph(g))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR:
            guard let s = p.sparse_tensor else { throw IRError.invalid("attribute '\(name)' of type SPARSE_TENSOR has no value") }
            value = .sparseTensor(OpaqueMessage(kind: .sparseTensor, bytes: C.pack(s)))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTO:
            guard let t = p.tp else { throw IRError.invalid("attribute '\(name)' of type TYPE_PROTO has no value") }
            value = .typeProto(OpaqueMessage(kind: .typeProto, bytes: C.pack(t)))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS: value = .floats(C.array(p.n_floats, p.floats))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS: value = .ints(C.array(p.n_ints, p.ints))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS: value = .strings(C.array(p.n_strings, p.strings).map(C.bytes))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS: value = .tensors(try C.messages(p.n_tensors, p.tensors).map(tensor))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS: value = .graphs(try C.messages(p.n_graphs, p.graphs).map(graph))
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS:
            value = .sparseTensors(C.messages(p.n_sparse_tensors, p.sparse_tensors).map { OpaqueMessage(kind: .sparseTensor, bytes: C.pack($0)) })
        case ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTOS:
            value = .typeProtos(C.messages(p.n_type_protos, p.type_protos).map { OpaqueMessage(kind: .typeProto, bytes: C.pack($0)) })
        default:
            // IR version 1 files may omit `type`; infer it from the one field that is set.
            value = try untypedValue(p, name: name)
        }
        var attr = Attribute(name: name, value: value)
        attr.refAttrName = C.string(p.ref_attr_name)
        attr.docString = C.string(p.doc_string)
        attr.unknownFields = C.unknown(a)
        return attr
    }

    private func untypedValue(_ p: Onnx__AttributeProto, name: String) throws -> Attribute.Value {
        if p.has_f != 0 { return .float(p.f) }
        if p.has_i != 0 { return .int(p.i) }
        if p.has_s != 0 { return .string(C.bytes(p.s)) }
        if let t = p.t { return .tensor(try tensor(t)) }
        if let g = p.g { return .graph(try graph(g)) }
        if p.n_floats > 0 { return .floats(C.array(p.n_floats, p.floats)) }
        if p.n_ints > 0 { return .ints(C.array(p.n_ints, p.ints)) }
        if p.n_strings > 0 { return .strings(C.array(p.n_strings, p.strings).map(C.bytes)) }
        if p.n_tensors > 0 { return .tensors(try C.messages(p.n_tensors, p.tensors).map(tensor)) }
        if p.n_graphs > 0 { return .graphs(try C.messages(p.n_graphs, p.graphs).map(graph)) }
        if p.ref_attr_name != nil { return .undefined }
        throw IRError.invalid("attribute '\(name)' has no type and no value")
    }

    func valueInfo(_ v: UnsafeMutablePointer<Onnx__ValueInfoProto>) -> ValueInfo {
        let p = v.pointee
        var info = ValueInfo(name: C.string(p.name), type: p.type.map(valueType) ?? .none)
        info.docString = C.string(p.doc_string)
        info.metadataProps = C.pairs(p.n_metadata_props, p.metadata_props)
        info.unknownFields = C.unknown(v)
        return info
    }

    func valueType(_ t: UnsafeMutablePointer<Onnx__TypeProto>) -> ValueType {
        let p = t.pointee
        guard p.value_case == ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE, let tt = p.tensor_type,
              let elem = DataType(rawValue: tt.pointee.elem_type) else {
            return .other(OpaqueMessage(kind: .typeProto, bytes: C.pack(t)))
        }
        var shape: [Dim]?
        var denotations: [String] = []
        if let s = tt.pointee.shape {
            let dims = C.messages(s.pointee.n_dim, s.pointee.dim)
            shape = dims.map { d in
                switch d.pointee.value_case {
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE: return .value(Int(d.pointee.dim_value))
                case ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM: return .param(C.string(d.pointee.dim_param))
                default: return .unknown
                }
            }
            denotations = dims.map { C.string($0.pointee.denotation) }
            if denotations.allSatisfy(\.isEmpty) { denotations = [] }
        }
        return .tensor(TensorType(elem, shape), dimDenotations: denotations, denotation: C.string(p.denotation))
    }

    func tensor(_ t: UnsafeMutablePointer<Onnx__TensorProto>) throws -> Tensor {
        let name = C.string(t.pointee.name)
        var dims: [Int] = []
        dims.reserveCapacity(t.pointee.n_dims)
        var elements = 1
        for d in C.array(t.pointee.n_dims, t.pointee.dims) {
            guard d >= 0 else { throw IRError.badTensor(name: name, reason: "negative dimension \(d)") }
            let (n, overflow) = elements.multipliedReportingOverflow(by: Int(d))
            guard !overflow else { throw IRError.badTensor(name: name, reason: "declared shape \(C.array(t.pointee.n_dims, t.pointee.dims)) has too many elements to represent") }
            elements = n
            dims.append(Int(d))
        }
        let code = t.pointee.has_data_type != 0 ? t.pointee.data_type : 0
        guard let dataType = DataType(rawValue: code), dataType != .undefined else {
            throw IRError.badTensor(name: name, reason: "unsupported or missing data type \(code)")
        }
        let segment = t.pointee.segment.map { (begin: $0.pointee.begin, end: $0.pointee.end) }
        if segment != nil {
            // A chunk of a larger tensor: its element count is end - begin, not the product of dims.
            elements = max(0, Int(segment!.end - segment!.begin))
        }
        guard let expectedBytes = dataType.byteCount(elements: elements) else {
            throw IRError.badTensor(name: name, reason: "declared shape \(dims) needs more bytes than can be addressed")
        }

        var result: Tensor
        if t.pointee.has_data_location != 0 && t.pointee.data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL {
            guard let reader = externalData else {
                throw IRError.externalData(tensor: name, reason: "the model was read from memory, so there is no folder to find the data in")
            }
            let (buffer, source) = try reader.read(tensor: name, entries: C.pairs(t.pointee.n_external_data, t.pointee.external_data), expectedBytes: expectedBytes)
            result = Tensor(name: name, dataType: dataType, dims: dims, buffer: buffer)
            result.externalSource = source
        } else if dataType == .string {
            let strings = C.array(t.pointee.n_string_data, t.pointee.string_data).map(C.bytes)
            guard strings.count == elements else {
                throw IRError.badTensor(name: name, reason: "declares \(elements) strings but holds \(strings.count)")
            }
            result = Tensor(name: name, strings: strings, dims: dims)
            result.encoding = .typed
        } else if t.pointee.has_raw_data != 0 || t.pointee.raw_data.len > 0 {
            let raw = t.pointee.raw_data
            guard raw.len == expectedBytes else {
                throw IRError.badTensor(name: name, reason: "declares shape \(dims) of \(dataType) (\(expectedBytes) bytes) but raw_data holds \(raw.len) bytes")
            }
            let buffer: TensorBuffer
            if let data = raw.data, raw.len > 0 {
                // Take the bytes protobuf-c allocated with topiary_alloc; it must then not free them.
                buffer = TensorBuffer(adopting: UnsafeMutableRawPointer(data), count: raw.len)
                t.pointee.raw_data = ProtobufCBinaryData(len: 0, data: nil)
                t.pointee.has_raw_data = 0
            } else {
                buffer = TensorBuffer(zeroedCount: 0)
            }
            result = Tensor(name: name, dataType: dataType, dims: dims, buffer: buffer)
        } else {
            result = Tensor(name: name, dataType: dataType, dims: dims, buffer: try TypedFields.decode(t.pointee, dataType: dataType, elements: elements, expectedBytes: expectedBytes, name: name))
            result.encoding = .typed
        }
        result.docString = C.string(t.pointee.doc_string)
        result.metadataProps = C.pairs(t.pointee.n_metadata_props, t.pointee.metadata_props)
        result.segment = segment
        result.unknownFields = C.unknown(t)
        return result
    }
}
