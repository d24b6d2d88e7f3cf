import CONNX

/// Builds protobuf-c structs for an IR model, in an arena that owns them. Tensor bytes are not
/// copied: `raw_data` points into the IR's buffers, which the arena keeps alive.
struct OnnxExporter {
    let arena: CArena
    /// Where tensors go that are written outside the model file, if anywhere.
    let externalData: ExternalDataWriter?

    func model(_ model: Model) throws -> UnsafeMutablePointer<Onnx__ModelProto> {
        let m: UnsafeMutablePointer<Onnx__ModelProto> = arena.message(onnx__model_proto__init)
        m.pointee.has_ir_version = 1
        m.pointee.ir_version = Int64(model.irVersion)
        let opsets = model.opsetImports.map { o -> UnsafeMutablePointer<Onnx__OperatorSetIdProto> in
            let p: UnsafeMutablePointer<Onnx__OperatorSetIdProto> = arena.message(onnx__operator_set_id_proto__init)
            p.pointee.domain = arena.string(o.domain)
            p.pointee.has_version = 1
            p.pointee.version = Int64(o.version)
            return p
        }
        m.pointee.n_opset_import = opsets.count
        m.pointee.opset_import = arena.pointers(opsets)
        m.pointee.producer_name = arena.string(model.producerName)
        m.pointee.producer_version = arena.string(model.producerVersion)
        m.pointee.domain = arena.string(model.domain)
        if let v = model.modelVersion {
            m.pointee.has_model_version = 1
            m.pointee.model_version = Int64(v)
        }
        m.pointee.doc_string = arena.string(model.docString)
        m.pointee.graph = try graph(model.graph)
        (m.pointee.n_metadata_props, m.pointee.metadata_props) = arena.pairs(model.metadataProps)
        let training = try model.trainingInfo.map { try opaque($0, onnx__training_info_proto__unpack, onnx__training_info_proto__free_unpacked) }
        m.pointee.n_training_info = training.count
        m.pointee.training_info = arena.pointers(training)
        let functions = try model.functions.map { try opaque($0, onnx__function_proto__unpack, onnx__function_proto__free_unpacked) }
        m.pointee.n_functions = functions.count
        m.pointee.functions = arena.pointers(functions)
        let configs = try model.configurations.map { try opaque($0, onnx__device_configuration_proto__unpack, onnx__device_configuration_proto__free_unpacked) }
        m.pointee.n_configuration = configs.count
        m.pointee.configuration = arena.pointers(configs)
        arena.attachUnknown(model.unknownFields, to: m)
        return m
    }

    func graph(_ graph: Graph) throws -> UnsafeMutablePointer<Onnx__GraphProto> {
        let g: UnsafeMutablePointer<Onnx__GraphProto> = arena.message(onnx__graph_proto__init)
        let nodes = try graph.nodes.map(node)
        g.pointee.n_node = nodes.count
        g.pointee.node = arena.pointers(nodes)
        g.pointee.name = arena.string(graph.name)
        let inits = try graph.initializers.map { try tensor($0, allowExternal: true) }
        g.pointee.n_initializer = inits.count
        g.pointee.initializer = arena.pointers(inits)
        let sparse = try graph.sparseInitializers.map { try opaque($0, onnx__sparse_tensor_proto__unpack, onnx__sparse_tensor_proto__free_unpacked) }
        g.pointee.n_sparse_initializer = sparse.count
        g.pointee.sparse_initializer = arena.pointers(sparse)
        g.pointee.doc_string = arena.string(graph.docString)
        let inputs = try graph.inputs.map(valueInfo), outputs = try graph.outputs.map(valueInfo), infos = try graph.valueInfo.map(valueInfo)
        (g.pointee.n_input, g.pointee.input) = (inputs.count, arena.pointers(inputs))
        (g.pointee.n_output, g.pointee.output) = (outputs.count, arena.pointers(outputs))
        (g.pointee.n_value_info, g.pointee.value_info) = (infos.count, arena.pointers(infos))
        let annotations = try graph.quantizationAnnotations.map { try opaque($0, onnx__tensor_annotation__unpack, onnx__tensor_annotation__free_unpacked) }
        (g.pointee.n_quantization_annotation, g.pointee.quantization_annotation) = (annotations.count, arena.pointers(annotations))
        (g.pointee.n_metadata_props, g.pointee.metadata_props) = arena.pairs(graph.metadataProps)
        arena.attachUnknown(graph.unknownFields, to: g)
        return g
    }

    func node(_ node: Node) throws -> UnsafeMutablePointer<Onnx__NodeProto> {
        let n: UnsafeMutablePointer<Onnx__NodeProto> = arena.message(onnx__node_proto__init)
        (n.pointee.n_input, n.pointee.input) = (node.inputs.count, arena.strings(node.inputs))
        (n.pointee.n_output, n.pointee.output) = (node.outputs.count, arena.strings(node.outputs))
        n.pointee.name = arena.string(node.name)
        n.pointee.op_type = arena.required(node.opType)
        n.pointee.domain = arena.string(node.domain)
        n.pointee.overload = arena.string(node.overload)
        let attrs = try node.attributes.map(attribute)
        (n.pointee.n_attribute, n.pointee.attribute) = (attrs.count, arena.pointers(attrs))
        n.pointee.doc_string = arena.string(node.docString)
        (n.pointee.n_metadata_props, n.pointee.metadata_props) = arena.pairs(node.metadataProps)
        let devices = try node.deviceConfigurations.map { try opaque($0, onnx__node_device_configuration_proto__unpack, onnx__node_device_configuration_proto__free_unpacked) }
        (n.pointee.n_device_configurations, n.pointee.device_configurations) = (devices.count, arena.pointers(devices))
        arena.attachUnknown(node.unknownFields, to: n)
        return n
    }

    func attribute(_ attr: Attribute) throws -> UnsafeMutablePointer<Onnx__AttributeProto> {
        let a: UnsafeMutablePointer<Onnx__AttributeProto> = arena.message(onnx__attribute_proto__init)
        a.pointee.name = arena.required(attr.name)
        a.pointee.ref_attr_name = arena.string(attr.refAttrName)
        a.pointee.doc_string = arena.string(attr.docString)
        a.pointee.has_type = 1
        switch attr.value {
        case .float(let f):
            (a.pointee.type, a.pointee.has_f, a.pointee.f) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOAT, 1, f)
        case .int(let i):
            (a.pointee.type, a.pointee.has_i, a.pointee.i) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INT, 1, i)
        case .string(let s):
            (a.pointee.type, a.pointee.has_s, a.pointee.s) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRING, 1, arena.binary(s))
        case .tensor(let t):
            (a.pointee.type, a.pointee.t) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSOR, try tensor(t, allowExternal: false))
        case .graph(let g):
            (a.pointee.type, a.pointee.g) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPH, try graph(g))
        case .sparseTensor(let s):
            (a.pointee.type, a.pointee.sparse_tensor) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSOR, try opaque(s, onnx__sparse_tensor_proto__unpack, onnx__sparse_tensor_proto__free_unpacked))
        case .typeProto(let t):
            (a.pointee.type, a.pointee.tp) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTO, try opaque(t, onnx__type_proto__unpack, onnx__type_proto__free_unpacked))
        case .floats(let fs):
            (a.pointee.type, a.pointee.n_floats, a.pointee.floats) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__FLOATS, fs.count, arena.array(fs))
        case .ints(let xs):
            (a.pointee.type, a.pointee.n_ints, a.pointee.ints) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__INTS, xs.count, arena.array(xs))
        case .strings(let ss):
            (a.pointee.type, a.pointee.n_strings, a.pointee.strings) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__STRINGS, ss.count, arena.array(ss.map(arena.binary)))
        case .tensors(let ts):
            let items = try ts.map { try tensor($0, allowExternal: false) }
            (a.pointee.type, a.pointee.n_tensors, a.pointee.tensors) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TENSORS, items.count, arena.pointers(items))
        case .graphs(let gs):
            let items = try gs.map(graph)
            (a.pointee.type, a.pointee.n_graphs, a.pointee.graphs) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__GRAPHS, items.count, arena.pointers(items))
        case .sparseTensors(let ss):
            let items = try ss.map { try opaque($0, onnx__sparse_tensor_proto__unpack, onnx__sparse_tensor_proto__free_unpacked) }
            (a.pointee.type, a.pointee.n_sparse_tensors, a.pointee.sparse_tensors) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__SPARSE_TENSORS, items.count, arena.pointers(items))
        case .typeProtos(let ts):
            let items = try ts.map { try opaque($0, onnx__type_proto__unpack, onnx__type_proto__free_unpacked) }
            (a.pointee.type, a.pointee.n_type_protos, a.pointee.type_protos) = (ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__TYPE_PROTOS, items.count, arena.pointers(items))
        case .undefined:
            (a.pointee.has_type, a.pointee.type) = (0, ONNX__ATTRIBUTE_PROTO__ATTRIBUTE_TYPE__UNDEFINED)
        }
        arena.attachUnknown(attr.unknownFields, to: a)
        return a
    }

    func valueInfo(_ info: ValueInfo) throws -> UnsafeMutablePointer<Onnx__ValueInfoProto> {
        let v: UnsafeMutablePointer<Onnx__ValueInfoProto> = arena.message(onnx__value_info_proto__init)
        v.pointee.name = arena.required(info.name)
        v.pointee.doc_string = arena.string(info.docString)
        (v.pointee.n_metadata_props, v.pointee.metadata_props) = arena.pairs(info.metadataProps)
        switch info.type {
        case .none:
            break
        case .other(let opaqueType):
            v.pointee.type = try opaque(opaqueType, onnx__type_proto__unpack, onnx__type_proto__free_unpacked)
        case .tensor(let t, let denotations, let denotation):
            let tp: UnsafeMutablePointer<Onnx__TypeProto> = arena.message(onnx__type_proto__init)
            let tt: UnsafeMutablePointer<Onnx__TypeProto__Tensor> = arena.message(onnx__type_proto__tensor__init)
            tt.pointee.has_elem_type = 1
            tt.pointee.elem_type = t.elemType.rawValue
            if let shape = t.shape {
                let s: UnsafeMutablePointer<Onnx__TensorShapeProto> = arena.message(onnx__tensor_shape_proto__init)
                let dims = shape.enumerated().map { i, d -> UnsafeMutablePointer<Onnx__TensorShapeProto__Dimension> in
                    let p: UnsafeMutablePointer<Onnx__TensorShapeProto__Dimension> = arena.message(onnx__tensor_shape_proto__dimension__init)
                    switch d {
                    case .value(let n):
                        p.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE
                        p.pointee.dim_value = Int64(n)
                    case .param(let name):
                        p.pointee.value_case = ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM
                        p.pointee.dim_param = arena.required(name)
                    case .unknown:
                        break
                    }
                    if i < denotations.count { p.pointee.denotation = arena.string(denotations[i]) }
                    return p
                }
                (s.pointee.n_dim, s.pointee.dim) = (dims.count, arena.pointers(dims))
                tt.pointee.shape = s
            }
            tp.pointee.value_case = ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE
            tp.pointee.tensor_type = tt
            tp.pointee.denotation = arena.string(denotation)
            v.pointee.type = tp
        }
        arena.attachUnknown(info.unknownFields, to: v)
        return v
    }

    func tensor(_ tensor: Tensor, allowExternal: Bool) throws -> UnsafeMutablePointer<Onnx__TensorProto> {
        let t: UnsafeMutablePointer<Onnx__TensorProto> = arena.message(onnx__tensor_proto__init)
        (t.pointee.n_dims, t.pointee.dims) = (tensor.dims.count, arena.array(tensor.dims.map { Int64($0) }))
        (t.pointee.has_data_type, t.pointee.data_type) = (1, tensor.dataType.rawValue)
        if let seg = tensor.segment {
            let s: UnsafeMutablePointer<Onnx__TensorProto__Segment> = arena.message(onnx__tensor_proto__segment__init)
            (s.pointee.has_begin, s.pointee.begin, s.pointee.has_end, s.pointee.end) = (1, seg.begin, 1, seg.end)
            t.pointee.segment = s
        }
        t.pointee.name = arena.string(tensor.name)
        t.pointee.doc_string = arena.string(tensor.docString)
        (t.pointee.n_metadata_props, t.pointee.metadata_props) = arena.pairs(tensor.metadataProps)
        let buffer = tensor.buffer
        arena.retain(buffer)
        if tensor.dataType == .string {
            (t.pointee.n_string_data, t.pointee.string_data) = (tensor.strings.count, arena.array(tensor.strings.map(arena.binary)))
        } else if allowExternal, let writer = externalData, writer.wantsExternal(tensor) {
            let entries = try writer.append(tensor)
            (t.pointee.n_external_data, t.pointee.external_data) = arena.pairs(entries)
            (t.pointee.has_data_location, t.pointee.data_location) = (1, ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        } else if tensor.encoding == .typed {
            encodeTyped(tensor, into: t)
        } else {
            t.pointee.has_raw_data = 1
            t.pointee.raw_data = ProtobufCBinaryData(len: buffer.count, data: buffer.count > 0 ? buffer.base.assumingMemoryBound(to: UInt8.self) : nil)
        }
        arena.attachUnknown(tensor.unknownFields, to: t)
        return t
    }

    /// Fills the typed repeated field for the tensor's data type.
    private func encodeTyped(_ tensor: Tensor, into t: UnsafeMutablePointer<Onnx__TensorProto>) {
        let buffer = tensor.buffer
        let type = tensor.dataType
        let n = TypedFields.fieldCount(for: type, elements: tensor.segment.map { Int($0.end - $0.begin) } ?? tensor.elementCount, bytes: buffer.count)
        switch TypedFields.field(for: type) {
        case .float:
            (t.pointee.n_float_data, t.pointee.float_data) = (n, buffer.base.assumingMemoryBound(to: Float.self))
        case .double:
            (t.pointee.n_double_data, t.pointee.double_data) = (n, buffer.base.assumingMemoryBound(to: Double.self))
        case .int64:
            (t.pointee.n_int64_data, t.pointee.int64_data) = (n, buffer.base.assumingMemoryBound(to: Int64.self))
        case .uint64:
            if type == .uint64 {
                (t.pointee.n_uint64_data, t.pointee.uint64_data) = (n, buffer.base.assumingMemoryBound(to: UInt64.self))
            } else {
                let p = arena.alloc(UInt64.self, count: n)
                let src = buffer.base.assumingMemoryBound(to: UInt32.self)
                for i in 0..<n { p[i] = UInt64(src[i]) }
                (t.pointee.n_uint64_data, t.pointee.uint64_data) = (n, p)
            }
        case .int32:
            let p = arena.alloc(Int32.self, count: n)
            switch type {
            case .int32: for i in 0..<n { p[i] = buffer.base.assumingMemoryBound(to: Int32.self)[i] }
            case .int16: for i in 0..<n { p[i] = Int32(buffer.base.assumingMemoryBound(to: Int16.self)[i]) }
            case .int8: for i in 0..<n { p[i] = Int32(buffer.base.assumingMemoryBound(to: Int8.self)[i]) }
            case .uint16, .float16, .bfloat16: for i in 0..<n { p[i] = Int32(buffer.base.assumingMemoryBound(to: UInt16.self)[i]) }
            default: for i in 0..<n { p[i] = Int32(buffer.base.assumingMemoryBound(to: UInt8.self)[i]) }
            }
            (t.pointee.n_int32_data, t.pointee.int32_data) = (n, p)
        case .string:
            break
        }
    }

    /// Unpacks a carried-through message into a struct that the arena frees later.
    private func opaque<T>(
        _ message: OpaqueMessage,
        _ unpack: (UnsafeMutablePointer<ProtobufCAllocator>?, Int, UnsafePointer<UInt8>?) -> UnsafeMutablePointer<T>?,
        _ free: @escaping (UnsafeMutablePointer<T>?, UnsafeMutablePointer<ProtobufCAllocator>?) -> Void
    ) throws -> UnsafeMutablePointer<T> {
        let p = message.bytes.withUnsafeBufferPointer { unpack(nil, $0.count, $0.baseAddress) }
        guard let p else { throw IRError.invalid("a carried-through \(message.kind) message no longer parses") }
        arena.onFree { free(p, nil) }
        return p
    }
}
