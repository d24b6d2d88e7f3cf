import Foundation
import TopiaryEngine
import TopiaryIR
import TopiaryPruning

/// A JSON value, for the free-form parts of a report (stage settings).
public enum JSONValue: Codable, Sendable, Equatable {
    case string(String), number(Double), bool(Bool), array([JSONValue]), object([String: JSONValue]), null

    public init(_ any: Any) {
        switch any {
        case let s as String: self = .string(s)
        case let b as Bool: self = .bool(b)
        case let i as Int: self = .number(Double(i))
        case let u as UInt64: self = .number(Double(u))
        case let f as Float: self = .number(Double(f))
        case let d as Double: self = .number(d)
        case let a as [Any]: self = .array(a.map(JSONValue.init))
        case let o as [String: Any]: self = .object(o.mapValues(JSONValue.init))
        default: self = .null
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.singleValueContainer()
        switch self {
        case .string(let s): try c.encode(s)
        case .number(let d): try c.encode(d)
        case .bool(let b): try c.encode(b)
        case .array(let a): try c.encode(a)
        case .object(let o): try c.encode(o)
        case .null: try c.encodeNil()
        }
    }

    public init(from decoder: Decoder) throws {
        let c = try decoder.singleValueContainer()
        if c.decodeNil() { self = .null } else if let b = try? c.decode(Bool.self) { self = .bool(b) } else if let d = try? c.decode(Double.self) { self = .number(d) } else if let s = try? c.decode(String.self) { self = .string(s) } else if let a = try? c.decode([JSONValue].self) { self = .array(a) } else { self = .object(try c.decode([String: JSONValue].self)) }
    }
}

/// Costs of the model at a named report, per node and in total.
public struct ReportSnapshot: Codable, Sendable {
    public var totals: CostTotals
    public var nodes: [NodeCost]
}

/// Everything a run produced, written as report.json (schema `topiary.run/1`, described in
/// schemas/report.schema.json and docs/pipeline.md).
public struct RunRecord: Codable, Sendable {
    public struct StageRecord: Codable, Sendable {
        public var index: Int
        public var kind: String
        public var label: String
        public var settings: JSONValue
        public var status: String
        public var seconds: Double
    }

    public struct Pruning: Codable, Sendable {
        public var stage: Int
        public var criterion: String
        public var target: String
        public var before: CostTotals
        public var after: CostTotals
        public var groups: [GroupWidth]
    }

    public struct Finetune: Codable, Sendable {
        public var stage: Int
        public var epochs: [EpochReport]
    }

    public struct Evaluation: Codable, Sendable {
        public var stage: Int
        public var name: String
        public var data: String
        public var top1: Double
        public var top5: Double
        public var loss: Double
        public var samples: Int
        public var flops: Int
        public var params: Int
    }

    public struct SweepPoint: Codable, Sendable {
        public var criterion: String
        public var target: String
        public var flops: Int
        public var params: Int
        public var top1: Double?
        public var loss: Double?
    }

    public struct Sweep: Codable, Sendable {
        public var stage: Int
        public var points: [SweepPoint]
        public var baselineFlops: Int
    }

    /// Soft filter pruning rounds of a fine-tuning stage.
    public struct SoftPruning: Codable, Sendable {
        public struct Round: Codable, Sendable {
            public var epoch: Int
            /// Filters zeroed at this round.
            public var zeroed: Int
            /// Of the filters zeroed at the previous round, how many have non-zero weights again.
            public var regrown: Int
            public var previouslyZeroed: Int
            /// Of those, how many are not zeroed again at this round (they recovered for good).
            public var revived: Int
        }
        public var stage: Int
        public var ratio: Double
        public var rounds: [Round]
    }

    /// Gradual pruning rounds of a fine-tuning stage.
    public struct GradualPruning: Codable, Sendable {
        public struct Round: Codable, Sendable {
            /// Fraction of the stage's training done when the round ran.
            public var progress: Double
            public var target: String
            /// Output channels masked so far, over every producing weight.
            public var masked: Int
            public var flopsKept: Double
            public var paramsKept: Double
        }
        public var stage: Int
        public var steps: Int
        public var until: Double
        public var rounds: [Round]
    }

    public var schema = "topiary.run/1"
    public var pipeline: String
    public var model: String
    public var seed: UInt64
    public var topiaryVersion = Topiary.version
    public var stages: [StageRecord] = []
    public var reports: [String: ReportSnapshot] = [:]
    public var pruning: [Pruning] = []
    public var finetune: [Finetune] = []
    public var evaluations: [Evaluation] = []
    public var sweeps: [Sweep] = []
    public var softPruning: [SoftPruning] = []
    public var gradualPruning: [GradualPruning] = []
    public var exports: [String] = []
    public var seconds = 0.0
}

/// Version of the library, reported in run.json and report.json.
public enum Topiary {
    public static let version = "0.1.0"
}
