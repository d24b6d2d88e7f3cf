import Foundation
import TopiaryIR

/// Everything a fine-tuning run is configured by.
public struct TrainingOptions: Sendable, Codable, Equatable {
    public var epochs = 1
    public var batch = 64
    public var seed: UInt64 = 0
    public var threads = 2
    public var optimizer = OptimizerOptions()
    public var schedule = Schedule()
    public var loss = LossOptions()
    /// Random crop after zero-padding by this many pixels (0: off).
    public var cropPadding = 0
    /// Random horizontal flips.
    public var flip = false

    public init() {}
}

/// Metrics of a model on a dataset.
public struct Metrics: Sendable, Codable, Equatable {
    public var top1: Double
    public var top5: Double
    public var loss: Double
    public var samples: Int
}

/// What one epoch did.
public struct EpochReport: Sendable, Codable, Equatable {
    public var epoch: Int
    public var trainLoss: Double
    public var trainTop1: Double
    public var validation: Metrics?
    public var seconds: Double
    public var samplesPerSecond: Double
}

/// Progress inside an epoch, for progress bars and log lines.
public struct TrainingProgress: Sendable {
    public var epoch: Int
    public var epochs: Int
    public var batch: Int
    public var batches: Int
    public var loss: Double
    public var samplesPerSecond: Double
    public var secondsLeft: Double
}

/// Fine-tunes a model with the engine: seeded shuffling, augmentation, loss (with optional
/// distillation from a teacher), optimizer and schedule, a checkpoint after every epoch that a
/// killed run resumes from, and validation metrics.
public final class Trainer {
    public let options: TrainingOptions
    let program: Program
    let teacher: Program?
    let optimizer: Optimizer
    var rng: SplitMix
    var completedEpochs = 0
    public internal(set) var reports: [EpochReport] = []
    /// Slices set to zero now and again after every optimizer step (gradual pruning's masked
    /// channels: they stay removed while the rest trains).
    public var heldAtZero: [ZeroSlices] = [] {
        didSet { for z in heldAtZero { program.zero(z) } }
    }
    /// Shape of one input sample and of the model's output, as compiled.
    public var inputShape: [Int] { program.inputShape }
    public var outputShape: [Int] { program.outputShape }

    /// Feature distillation from the teacher, when `options.loss.featureWeight` > 0.
    let features: FeatureDistillation?
    /// Feature maps distilled from the teacher (names), in the model's node order.
    public var distilledFeatures: [String] { features?.matches.map(\.name) ?? [] }

    /// With a teacher, `teacherChannels` maps each feature map that lost channels to the teacher
    /// positions of the channels kept (feature distillation; `PruningResult.keptChannels`).
    /// Weights an exporter handed out through Identity copies become weights of their own in
    /// `model` first (`UntieWeightCopies`): each trains separately, as in the framework it came from.
    public init(model: Model, options: TrainingOptions, teacher: Model? = nil, teacherChannels: [String: [Int]] = [:]) throws {
        UntieWeightCopies.run(model)
        self.options = options
        setComputeThreads(options.threads)
        let program = try Program(model: model, batch: options.batch, trainable: true)
        self.program = program
        let teacherProgram = try teacher.map { try Program(model: $0, batch: options.batch, trainable: false) }
        self.teacher = teacherProgram
        if options.loss.featureWeight > 0 {
            guard let teacherProgram else { throw EngineError.unsupported("feature distillation needs a teacher") }
            features = try FeatureDistillation(model: model, student: program, teacher: teacherProgram, kept: teacherChannels, weight: options.loss.featureWeight)
        } else {
            features = nil
        }
        optimizer = Optimizer(options: options.optimizer, sizes: program.parameters.indices.map { program.parameter($0).count })
        rng = SplitMix(seed: options.seed)
    }

    /// Trains for the remaining epochs. With `checkpoint`, state is saved after every epoch and,
    /// when the file exists and `resume` is set, training continues from it.
    public func fit(train: Dataset, validation: Dataset?, checkpoint: String? = nil, resume: Bool = false,
                    progress: ((TrainingProgress) -> Void)? = nil, beforeStep: ((Double) throws -> Void)? = nil,
                    afterEpoch: ((Int) throws -> Void)? = nil) throws -> [EpochReport] {
        try check(train)
        if let validation { try check(validation) }
        if resume, let checkpoint, FileManager.default.fileExists(atPath: checkpoint) { try restore(from: checkpoint) }
        let b = options.batch
        let batches = train.count / b
        guard batches > 0 else { throw EngineError.data("the training set has \(train.count) samples, fewer than one batch of \(b)") }
        let classes = program.outputShape.last ?? 1
        let sample = train.sampleSize
        var input = [Float](repeating: 0, count: b * sample)
        var grad = [Float](repeating: 0, count: b * classes)
        var labels = [Int32](repeating: 0, count: b)
        while completedEpochs < options.epochs {
            let epoch = completedEpochs
            let start = Date()
            let order = rng.permutation(train.count)
            var lossSum = 0.0, correct = 0
            for k in 0..<batches {
                try beforeStep?((Double(epoch) + Double(k) / Double(batches)) / Double(options.epochs))
                for j in 0..<b {
                    let idx = order[k * b + j]
                    labels[j] = train.labels[idx]
                    input.withUnsafeMutableBufferPointer { dst in
                        train.images.withUnsafeBufferPointer { src in
                            augment(src.baseAddress! + idx * sample, into: dst.baseAddress! + j * sample, shape: train.sampleShape)
                        }
                    }
                }
                let lr = options.schedule.rate(epoch: Double(epoch) + Double(k) / Double(batches), total: options.epochs)
                var (loss, ok) = input.withUnsafeBufferPointer { x -> (Double, Int) in
                    let teacherOut = teacher?.forward(x, training: false)
                    let logits = program.forward(x, training: true)
                    return grad.withUnsafeMutableBufferPointer { g in
                        Loss.crossEntropy(logits: logits, labels: labels[...], classes: classes, options: options.loss, teacher: teacherOut, grad: g)
                    }
                }
                if let features, let teacher { loss += features.loss(student: program, teacher: teacher) }
                grad.withUnsafeBufferPointer { program.backward($0, seeds: features?.seeds ?? []) }
                optimizer.update(program, lr: lr)
                for z in heldAtZero { program.zero(z) }
                lossSum += loss
                correct += ok
                if let progress {
                    let elapsed = Date().timeIntervalSince(start)
                    let rate = Double((k + 1) * b) / max(elapsed, 1e-9)
                    let left = Double((batches - k - 1) * b) / rate + Double(options.epochs - epoch - 1) * Double(batches * b) / rate
                    progress(TrainingProgress(epoch: epoch + 1, epochs: options.epochs, batch: k + 1, batches: batches, loss: lossSum / Double(k + 1), samplesPerSecond: rate, secondsLeft: left))
                }
            }
            try afterEpoch?(epoch + 1)
            let seconds = Date().timeIntervalSince(start)
            let metrics = try validation.map { try evaluate($0) }
            reports.append(EpochReport(epoch: epoch + 1, trainLoss: lossSum / Double(batches), trainTop1: Double(correct) / Double(batches * b),
                                       validation: metrics, seconds: seconds, samplesPerSecond: Double(batches * b) / seconds))
            completedEpochs += 1
            if let checkpoint { try save(to: checkpoint) }
        }
        return reports
    }

    /// One optimizer step on the first batch of `data` (benchmarks: a training step in isolation).
    public func fitSteps(_ data: Dataset) throws -> Double {
        let b = options.batch, classes = program.outputShape.last ?? 1
        var grad = [Float](repeating: 0, count: b * classes)
        let loss = data.images.withUnsafeBufferPointer { x -> Double in
            let logits = program.forward(UnsafeBufferPointer(rebasing: x[0..<(b * data.sampleSize)]), training: true)
            return grad.withUnsafeMutableBufferPointer { g in
                Loss.crossEntropy(logits: logits, labels: data.labels[0..<b], classes: classes, options: options.loss, teacher: nil, grad: g).loss
            }
        }
        grad.withUnsafeBufferPointer { program.backward($0) }
        optimizer.update(program, lr: options.schedule.lr)
        return loss
    }

    /// Per-kernel-type times of one training step's forward and backward on the first batch.
    public func profile(_ data: Dataset) -> [(String, Double)] {
        let n = options.batch * data.sampleSize
        let fwd = data.images.withUnsafeBufferPointer { program.profileForward(UnsafeBufferPointer(rebasing: $0[0..<n]), training: true) }
        let g = [Float](repeating: 0.01, count: options.batch * (program.outputShape.last ?? 1))
        let bwd = g.withUnsafeBufferPointer { program.profileBackward($0) }
        return fwd.map { ("forward " + $0.0, $0.1) } + bwd.map { ("backward " + $0.0, $0.1) }
    }

    /// Top-1, top-5 and loss of the current weights on `data` (inference mode).
    public func evaluate(_ data: Dataset) throws -> Metrics {
        try Evaluator.evaluate(program, data)
    }

    /// Loads every trained parameter and statistic from `model`'s initializers (after an outside
    /// edit such as soft pruning).
    public func load(from model: Model) {
        var w: [String: [Float]] = [:]
        for t in model.graph.initializers where t.dataType == .float { w[t.name] = t.floatValues() }
        program.load(weights: w)
    }

    /// Writes the trained weights into `model`.
    public func writeBack(into model: Model) { program.writeBack(into: model) }

    func check(_ data: Dataset) throws {
        try program.requireInput(data.sampleShape)
        let classes = program.outputShape.last ?? 1
        if let bad = data.labels.first(where: { $0 < 0 || Int($0) >= classes }) {
            throw EngineError.data("label \(bad) is out of range for a model with \(classes) outputs")
        }
    }

    private func augment(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<Float>, shape: [Int]) {
        let n = shape.reduce(1, *)
        guard shape.count == 3, options.cropPadding > 0 || options.flip else {
            dst.update(from: src, count: n)
            return
        }
        let (c, h, w) = (shape[0], shape[1], shape[2])
        let p = options.cropPadding
        let dy = p > 0 ? rng.below(2 * p + 1) - p : 0, dx = p > 0 ? rng.below(2 * p + 1) - p : 0
        let flip = options.flip && rng.below(2) == 1
        for ch in 0..<c {
            for y in 0..<h {
                for x in 0..<w {
                    let sy = y + dy, sx0 = x + dx
                    let sx = flip ? w - 1 - sx0 : sx0
                    dst[(ch * h + y) * w + x] = sy >= 0 && sy < h && sx >= 0 && sx < w ? src[(ch * h + sy) * w + sx] : 0
                }
            }
        }
    }
}

/// Inference-mode metrics over a whole dataset (a last partial batch is padded, its padding ignored).
public enum Evaluator {
    public static func evaluate(model: Model, data: Dataset, batch: Int = 64, threads: Int = 2) throws -> Metrics {
        setComputeThreads(threads)
        let program = try Program(model: model, batch: min(batch, max(data.count, 1)), trainable: false)
        try program.requireInput(data.sampleShape)
        let classes = program.outputShape.last ?? 1
        if let bad = data.labels.first(where: { $0 < 0 || Int($0) >= classes }) {
            throw EngineError.data("label \(bad) is out of range for a model with \(classes) outputs")
        }
        return try evaluate(program, data)
    }

    static func evaluate(_ program: Program, _ data: Dataset) throws -> Metrics {
        let b = program.batch, sample = data.sampleSize, classes = program.outputShape.last ?? 1
        var input = [Float](repeating: 0, count: b * sample)
        var top1 = 0, top5 = 0, loss = 0.0
        var start = 0
        while start < data.count {
            let m = min(b, data.count - start)
            input.withUnsafeMutableBufferPointer { dst in
                data.images.withUnsafeBufferPointer { src in
                    dst.baseAddress!.update(from: src.baseAddress! + start * sample, count: m * sample)
                }
            }
            let out = input.withUnsafeBufferPointer { program.forward($0, training: false) }
            for r in 0..<m {
                let z = out.baseAddress! + r * classes
                let y = Int(data.labels[start + r])
                var mx = -Float.greatestFiniteMagnitude
                for k in 0..<classes { mx = max(mx, z[k]) }
                var sum = 0.0
                for k in 0..<classes { sum += exp(Double(z[k] - mx)) }
                loss += -(Double(z[y] - mx) - log(sum))
                let above = (0..<classes).filter { z[$0] > z[y] }.count
                if above == 0 { top1 += 1 }
                if above < 5 { top5 += 1 }
            }
            start += m
        }
        let n = Double(max(data.count, 1))
        return Metrics(top1: Double(top1) / n, top5: Double(top5) / n, loss: loss / n, samples: data.count)
    }
}
