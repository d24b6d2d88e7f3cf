import Foundation

/// Optimizer settings.
public enum OptimizerKind: String, Sendable, Codable, CaseIterable {
    case sgd, adamw
}

public struct OptimizerOptions: Sendable, Codable, Equatable {
    public var kind: OptimizerKind = .sgd
    public var momentum: Float = 0.9
    public var nesterov = false
    public var weightDecay: Float = 0
    public var beta1: Float = 0.9
    public var beta2: Float = 0.999
    public var epsilon: Float = 1e-8

    public init(kind: OptimizerKind = .sgd, momentum: Float = 0.9, nesterov: Bool = false, weightDecay: Float = 0) {
        self.kind = kind
        self.momentum = momentum
        self.nesterov = nesterov
        self.weightDecay = weightDecay
    }
}

/// SGD with momentum (PyTorch's formulation: v = μv + g + λw; w −= lr·v, or lr·(g + μv) with
/// Nesterov) and AdamW (decoupled weight decay). State is one or two buffers per parameter.
final class Optimizer {
    let options: OptimizerOptions
    var first: [[Float]]
    var second: [[Float]]
    var step = 0

    init(options: OptimizerOptions, sizes: [Int]) {
        self.options = options
        first = sizes.map { Array(repeating: 0, count: $0) }
        second = options.kind == .adamw ? sizes.map { Array(repeating: 0, count: $0) } : []
    }

    func update(_ program: Program, lr: Float) {
        step += 1
        let o = options
        for i in program.parameters.indices {
            let (w, g, n) = program.parameter(i)
            switch o.kind {
            case .sgd:
                first[i].withUnsafeMutableBufferPointer { v in
                    for k in 0..<n {
                        let grad = g[k] + o.weightDecay * w[k]
                        v[k] = o.momentum * v[k] + grad
                        w[k] -= lr * (o.nesterov ? grad + o.momentum * v[k] : v[k])
                    }
                }
            case .adamw:
                let c1 = 1 - pow(o.beta1, Float(step)), c2 = 1 - pow(o.beta2, Float(step))
                first[i].withUnsafeMutableBufferPointer { m in
                    second[i].withUnsafeMutableBufferPointer { v in
                        for k in 0..<n {
                            w[k] -= lr * o.weightDecay * w[k]
                            m[k] = o.beta1 * m[k] + (1 - o.beta1) * g[k]
                            v[k] = o.beta2 * v[k] + (1 - o.beta2) * g[k] * g[k]
                            w[k] -= lr * (m[k] / c1) / ((v[k] / c2).squareRoot() + o.epsilon)
                        }
                    }
                }
            }
        }
    }
}

/// Learning-rate schedules over optimizer steps.
public enum ScheduleKind: String, Sendable, Codable, CaseIterable {
    case constant, step, cosine
}

public struct Schedule: Sendable, Codable, Equatable {
    public var kind: ScheduleKind = .cosine
    public var lr: Float = 0.01
    /// For `step`: multiply by `gamma` every `stepEpochs` epochs.
    public var stepEpochs = 1
    public var gamma: Float = 0.1
    /// Linear warm-up from 0 over this many epochs.
    public var warmupEpochs: Float = 0

    public init(kind: ScheduleKind = .cosine, lr: Float = 0.01, stepEpochs: Int = 1, gamma: Float = 0.1, warmupEpochs: Float = 0) {
        (self.kind, self.lr, self.stepEpochs, self.gamma, self.warmupEpochs) = (kind, lr, stepEpochs, gamma, warmupEpochs)
    }

    /// The rate at fractional epoch `e` of `total`.
    public func rate(epoch e: Double, total: Int) -> Float {
        if warmupEpochs > 0 && e < Double(warmupEpochs) { return lr * Float(e / Double(warmupEpochs)) }
        switch kind {
        case .constant: return lr
        case .step: return lr * pow(gamma, Float(Int(e) / max(stepEpochs, 1)))
        case .cosine:
            let start = Double(warmupEpochs), span = max(Double(total) - start, 1e-9)
            return lr * Float(0.5 * (1 + cos(Double.pi * min((e - start) / span, 1))))
        }
    }
}
