import TopiaryIR

/// Facts and costs of one model, in the stable form that `topiary report --json` prints
/// (documented in docs/cost-model.md).
public struct ModelReport: Codable, Sendable {
    /// A graph input or output.
    public struct Port: Codable, Sendable {
        public var name: String
        public var type: String
    }

    /// Totals per op type.
    public struct OpTotals: Codable, Sendable {
        public var count: Int
        public var params: Int
        public var macs: Int
        public var flops: Int
    }

    public var schema = "topiary.report/1"
    public var model: String
    public var producer: String
    public var irVersion: Int
    public var opsets: [String: Int]
    public var inputs: [Port]
    public var outputs: [Port]
    public var totals: CostTotals
    public var byOp: [String: OpTotals]
    public var nodes: [NodeCost]
    public var unanalysed: [Unanalysed]
    public var convention = "MACs: multiply-accumulates of Conv/ConvTranspose/Gemm/MatMul at batch 1; FLOPs = 2*MACs + bias adds + per-element counts (docs/cost-model.md); params: trainable float weights, BatchNormalization running statistics excluded"

    /// A node the analysis could not cover.
    public struct Unanalysed: Codable, Sendable {
        public var node: String
        public var op: String
        public var reason: String
    }

    enum CodingKeys: String, CodingKey {
        case schema, model, producer, irVersion = "ir_version", opsets, inputs, outputs, totals, byOp = "by_op", nodes, unanalysed, convention
    }

    /// Analyses `model` (read from `path`).
    public init(model: Model, path: String) throws {
        let (cost, shapes) = try CostModel.analyse(model)
        self.model = path
        self.producer = [model.producerName, model.producerVersion].filter { !$0.isEmpty }.joined(separator: " ")
        self.irVersion = model.irVersion
        self.opsets = Dictionary(model.opsetImports.map { ($0.domain.isEmpty ? "ai.onnx" : $0.domain, $0.version) }, uniquingKeysWith: max)
        func port(_ name: String, declared: TensorType?) -> Port {
            Port(name: name, type: (shapes.type(of: name) ?? declared)?.description ?? "?")
        }
        self.inputs = model.graph.modelInputs.map { port($0.name, declared: $0.type.tensorType) }
        self.outputs = model.graph.outputs.map { port($0.name, declared: $0.type.tensorType) }
        self.totals = cost.totals
        self.nodes = cost.nodes
        var byOp: [String: OpTotals] = [:]
        for n in cost.nodes {
            var t = byOp[n.opType] ?? OpTotals(count: 0, params: 0, macs: 0, flops: 0)
            t.count += 1
            t.params += n.params
            t.macs += n.macs
            t.flops += n.flops
            byOp[n.opType] = t
        }
        self.byOp = byOp
        self.unanalysed = cost.unanalysed.map { Unanalysed(node: $0.node, op: $0.opType, reason: $0.reason) }
    }
}
