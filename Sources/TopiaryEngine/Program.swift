import Foundation
import TopiaryIR

/// A model compiled for a fixed batch size: a topological schedule of kernels over buffers
/// allocated once. `forward` and `backward` allocate nothing. Trainable parameters are the float
/// initializers in weight slots; BatchNormalization running statistics are state; after training,
/// `writeBack` copies both into the IR model's initializers.
public final class Program {
    public let batch: Int
    let store = Store()
    var kernels: [Kernel] = []
    /// Value id of the (single) data input and of each graph output.
    public private(set) var inputID = 0
    public private(set) var outputIDs: [Int] = []
    /// Trainable parameters: initializer name and value id (with a gradient buffer).
    public private(set) var parameters: [(name: String, id: Int)] = []
    /// BatchNormalization running statistics: initializer name and value id.
    public private(set) var state: [(name: String, id: Int)] = []
    /// Value id of every named value (activations, constants).
    public private(set) var valueIDs: [String: Int] = [:]
    /// Shape of one input sample and of the first output.
    public private(set) var inputShape: [Int] = []
    public private(set) var outputShape: [Int] = []

    /// Compiles `model` for batches of `batch` samples. `trainable` adds gradient buffers;
    /// `inputGradient` one for the data input too (training never reads it: without it the first
    /// layer skips its input gradient). `direct: false` keeps kernels off their direct C forms
    /// (tests compare both).
    public init(model original: Model, batch: Int, trainable: Bool = true, inputGradient: Bool = false, direct: Bool = true) throws {
        self.batch = batch
        let model = try Program.rebatched(original, batch: batch)
        // An inference-only program runs BatchNormalization folded into the convolutions.
        if !trainable { try FoldBatchNorm.run(model) }
        let graph = model.graph
        let shapes = try ShapeInference.run(model)
        let constants = graph.constants()
        let inits = Set(graph.initializers.map(\.name))
        let inputs = graph.inputs.filter { !inits.contains($0.name) }
        guard inputs.count == 1 else { throw EngineError.unsupported("models with \(inputs.count) data inputs (one is supported)") }

        // Which constants are trained, and which are BatchNormalization statistics.
        var trained = Set<String>(), stats = Set<String>()
        for node in graph.nodes {
            let slots: [Int]
            switch node.opType {
            case "Conv", "ConvTranspose", "Gemm", "PRelu": slots = [1, 2]
            case "BatchNormalization":
                slots = [1, 2]
                for i in [3, 4] { if let n = node.input(i) { stats.insert(n) } }
            case "MatMul": slots = [1]
            case "Add", "Mul", "Sub": slots = [0, 1]
            default: slots = []
            }
            for s in slots {
                guard let name = node.input(s), inits.contains(name), let t = constants[name], t.dataType == .float else { continue }
                if ["Add", "Mul", "Sub"].contains(node.opType) && t.elementCount <= 1 { continue }
                trained.insert(name)
            }
        }

        var ids: [String: Int] = [:]
        func valueID(_ name: String) throws -> Int {
            if let id = ids[name] { return id }
            if let t = constants[name] {
                let id = store.add(shape: t.dims, gradient: trainable && trained.contains(name))
                if t.dataType.isFloatingPoint || t.dataType.isInteger, let v = t.floatValues() { store.set(id, v) }
                ids[name] = id
                if trained.contains(name) { parameters.append((name, id)) }
                if stats.contains(name) { state.append((name, id)) }
                return id
            }
            guard let shape = shapes.staticShape(of: name) else { throw EngineError.shape("the shape of '\(name)' is not known at batch \(batch)") }
            let id = store.add(shape: shape, gradient: trainable)
            ids[name] = id
            return id
        }
        guard let dataShape = shapes.staticShape(of: inputs[0].name) else {
            throw EngineError.shape("the shape of '\(inputs[0].name)' is not known at batch \(batch)")
        }
        inputID = store.add(shape: dataShape, gradient: trainable && inputGradient)
        ids[inputs[0].name] = inputID
        for i in shapes.order {
            let node = graph.nodes[i]
            if node.opType == "Constant" || constants[node.outputs.first ?? ""] != nil { continue }
            guard node.isDefaultDomain, let factory = KernelTable.table[node.opType] else {
                throw EngineError.unsupported("no kernel for \(node.isDefaultDomain ? "" : node.domain + "::")\(node.opType) (node '\(node.label)')")
            }
            let inIDs = try node.inputs.map { $0.isEmpty ? -1 : try valueID($0) }
            let outIDs = try node.outputs.map { $0.isEmpty ? store.add(shape: [1], gradient: false) : try valueID($0) }
            var ctx = KernelContext(node: node, store: store, inputs: inIDs, outputs: outIDs, constants: node.inputs.map { constants[$0] })
            ctx.direct = direct
            kernels.append(try factory(ctx))
        }
        outputIDs = try graph.outputs.map { try valueID($0.name) }
        valueIDs = ids
        inputShape = Array(store.shapes[inputID].dropFirst())
        outputShape = store.shapes[outputIDs[0]]
    }

    /// A copy of the model whose data input has `batch` samples: a symbolic batch is given the
    /// value, shape arithmetic is frozen, and Reshape targets that spell out the exported batch
    /// size copy the batch dimension instead (0).
    static func rebatched(_ model: Model, batch: Int) throws -> Model {
        let copy = try ModelFile.encode(model).withUnsafeBytes { try ModelFile.decode($0) }
        let graph = copy.graph
        let inits = Set(graph.initializers.map(\.name))
        guard let k = graph.inputs.firstIndex(where: { !inits.contains($0.name) }), let t = graph.inputs[k].type.tensorType, var shape = t.shape, !shape.isEmpty else {
            throw EngineError.unsupported("the model's data input has no shape")
        }
        let exported = shape[0].value
        shape[0] = .param("batch")
        graph.inputs[k] = ValueInfo(name: graph.inputs[k].name, tensor: TensorType(t.elemType, shape))
        try FreezeShapeInputs.run(copy)
        if let exported, exported != batch {
            // Each fix can make the batch symbolic further down, so repeat until nothing changes.
            var changed = true
            while changed {
                changed = false
                let table = try ShapeInference.run(copy)
                for i in graph.nodes.indices where graph.nodes[i].opType == "Reshape" {
                    guard let target = graph.nodes[i].input(1), let x = graph.nodes[i].input(0), let tensor = graph.initializer(named: target),
                          var v = tensor.int64Values(), v.first == Int64(exported), table.type(of: x)?.shape?.first == .param("batch") else { continue }
                    v[0] = 0
                    let name = target + "_batch"
                    graph.initializers.append(Tensor(name: name, int64s: v, dims: tensor.dims))
                    graph.nodes[i].inputs[1] = name
                    changed = true
                }
            }
        }
        shape[0] = .value(batch)
        graph.inputs[k] = ValueInfo(name: graph.inputs[k].name, tensor: TensorType(t.elemType, shape))
        graph.valueInfo = []
        for o in graph.outputs.indices {
            if case .tensor(var tt, _, _) = graph.outputs[o].type, var s = tt.shape, !s.isEmpty {
                s[0] = .unknown
                tt.shape = s
                graph.outputs[o].type = .tensor(tt, dimDenotations: [], denotation: "")
            }
        }
        return copy
    }

    /// Throws unless samples of `shape` fit the model's input.
    public func requireInput(_ shape: [Int]) throws {
        guard shape == inputShape else { throw EngineError.data("samples of shape \(shape) do not fit the model's input \(inputShape)") }
    }

    /// Runs the model on `input` (batch × sample floats); returns the first output.
    public func forward(_ input: UnsafeBufferPointer<Float>, training: Bool = false) -> UnsafeBufferPointer<Float> {
        store.values[inputID].update(from: input.baseAddress!, count: min(input.count, store.count(inputID)))
        for k in kernels { k.forward(store, training: training) }
        return UnsafeBufferPointer(start: store.values[outputIDs[0]], count: store.count(outputIDs[0]))
    }

    /// Seconds each kernel takes in one forward pass on `input`, by kernel type (for profiling).
    /// A kernel's entry in a profile: its type, and for convolutions the kind and map size.
    private func profileName(_ k: any Kernel) -> String {
        guard let conv = k as? ConvKernel else { return String(describing: type(of: k)) }
        let kind = conv.depthwise ? "depthwise" : conv.pointwise ? "pointwise" : "\(conv.kh)x\(conv.kw)"
        return "Conv \(kind) stride \(conv.sh), \(conv.ho)x\(conv.wo) out"
    }

    public func profileForward(_ input: UnsafeBufferPointer<Float>, training: Bool = false) -> [(String, Double)] {
        store.values[inputID].update(from: input.baseAddress!, count: min(input.count, store.count(inputID)))
        var times: [String: Double] = [:]
        for k in kernels {
            let t = DispatchTime.now().uptimeNanoseconds
            k.forward(store, training: training)
            times[profileName(k), default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
        }
        return times.sorted { $0.value > $1.value }
    }

    /// Re-estimates every BatchNormalization's running statistics as the average of its batch
    /// statistics over `batches` training-mode passes (after channels were zeroed or widths changed).
    public func recalibrateBatchNorm(_ batches: [[Float]]) {
        let norms = kernels.compactMap { $0 as? BatchNormKernel }
        for n in norms { n.recalibrated = 0 }
        for b in batches {
            _ = b.withUnsafeBufferPointer { forward($0, training: true) }
            for n in norms { n.recalibrated = (n.recalibrated ?? 0) + 1 }
        }
        for n in norms { n.recalibrated = nil }
    }

    /// Seconds each kernel type takes in one backward pass (after a forward), for profiling.
    public func profileBackward(_ outputGradient: UnsafeBufferPointer<Float>) -> [(String, Double)] {
        store.zeroGrads()
        store.grads[outputIDs[0]]?.update(from: outputGradient.baseAddress!, count: outputGradient.count)
        var times: [String: Double] = [:]
        for k in kernels.reversed() {
            let t = DispatchTime.now().uptimeNanoseconds
            k.backward(store)
            times[profileName(k), default: 0] += Double(DispatchTime.now().uptimeNanoseconds - t) / 1e9
        }
        return times.sorted { $0.value > $1.value }
    }

    /// Backpropagates `outputGradient` (same size as the first output) into every gradient buffer.
    /// `seeds` are gradients of further loss terms on inner values, added before the pass.
    public func backward(_ outputGradient: UnsafeBufferPointer<Float>, seeds: [(id: Int, grad: UnsafePointer<Float>)] = []) {
        store.zeroGrads()
        guard let g = store.grads[outputIDs[0]] else { return }
        g.update(from: outputGradient.baseAddress!, count: outputGradient.count)
        for (id, seed) in seeds {
            guard let buffer = store.grads[id] else { continue }
            Parallel.forEach(store.count(id)) { r in Vec.add(buffer + r.lowerBound, seed + r.lowerBound, r.count) }
        }
        for k in kernels.reversed() { k.backward(store) }
    }

    /// Value and gradient buffers of parameter `i`.
    func parameter(_ i: Int) -> (value: UnsafeMutablePointer<Float>, grad: UnsafeMutablePointer<Float>, count: Int) {
        let id = parameters[i].id
        return (store.values[id], store.grads[id]!, store.count(id))
    }

    /// Current values of every parameter and statistic, by initializer name.
    public func weights() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for (name, id) in parameters + state { out[name] = store.get(id) }
        return out
    }

    /// Loads weights by name (from a checkpoint or another program).
    public func load(weights: [String: [Float]]) {
        for (name, id) in parameters + state { if let v = weights[name] { store.set(id, v) } }
    }

    /// Sets slices of a parameter or constant to zero: along `axis` of a tensor of shape `dims`,
    /// the given positions (a masked channel's filter, bias or normalisation scale).
    public func zero(_ slices: ZeroSlices) {
        guard let id = valueIDs[slices.tensor], store.count(id) == slices.dims.reduce(1, *), slices.axis < slices.dims.count else { return }
        let n = slices.dims[slices.axis]
        let inner = slices.dims[(slices.axis + 1)...].reduce(1, *), outer = slices.dims[..<slices.axis].reduce(1, *)
        let v = store.values[id]
        for o in 0..<outer {
            for p in slices.positions where p < n { (v + (o * n + p) * inner).update(repeating: 0, count: inner) }
        }
        store.touch()
    }

    /// Writes trained parameters and statistics into `model`'s initializers.
    public func writeBack(into model: Model) {
        let w = weights()
        for i in model.graph.initializers.indices {
            let t = model.graph.initializers[i]
            guard let v = w[t.name], t.dataType == .float, v.count == t.elementCount else { continue }
            var u = t
            u.replaceBuffer(TensorBuffer(copying: v))
            model.graph.initializers[i] = u
        }
    }
}
