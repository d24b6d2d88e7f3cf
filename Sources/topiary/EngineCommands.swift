import ArgumentParser
import Foundation
import TopiaryEngine
import TopiaryIR

/// Shows training progress: a bar redrawn in place on a terminal, plain lines otherwise.
final class ProgressPrinter {
    let isTerminal = isatty(2) != 0
    private var lastLine = Date.distantPast

    func update(_ p: TrainingProgress) {
        let line = String(format: "epoch %d/%d  batch %d/%d  loss %.4f  %.0f samples/s  ETA %@",
                          p.epoch, p.epochs, p.batch, p.batches, p.loss, p.samplesPerSecond, Self.duration(p.secondsLeft))
        if isTerminal {
            let width = 24, done = Int(Double(width) * Double(p.batch) / Double(max(p.batches, 1)))
            let bar = String(repeating: "#", count: done) + String(repeating: ".", count: width - done)
            FileHandle.standardError.write(Data("\r[\(bar)] \(line)\u{1B}[K".utf8))
            if p.batch == p.batches { FileHandle.standardError.write(Data("\n".utf8)) }
        } else if p.batch == p.batches || Date().timeIntervalSince(lastLine) > 10 {
            lastLine = Date()
            FileHandle.standardError.write(Data((line + "\n").utf8))
        }
    }

    static func duration(_ s: Double) -> String {
        let t = Int(s.rounded())
        return t >= 3600 ? "\(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "\(t / 60)m\(t % 60)s" : "\(t)s"
    }
}

struct TrainCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "train", abstract: "Fine-tune (or train) a model with Topiary's CPU engine.")

    @Argument(help: "The ONNX model (never modified).") var model: String
    @Option(help: "Training data: an NPZ (arrays x, y) or an …-images-idx3-ubyte[.gz] file.") var train: String
    @Option(help: "Validation data, same formats.") var val: String?
    @Option(help: "Where to write the trained model.") var out: String
    @Option var epochs = 1
    @Option var batch = 64
    @Option(help: "sgd or adamw.") var optimizer = "sgd"
    @Option var lr: Float = 0.01
    @Option var momentum: Float = 0.9
    @Flag var nesterov = false
    @Option(name: .customLong("weight-decay")) var weightDecay: Float = 0
    @Option(help: "constant, step or cosine.") var schedule = "cosine"
    @Option(name: .customLong("step-epochs")) var stepEpochs = 1
    @Option var gamma: Float = 0.1
    @Option(name: .customLong("warmup-epochs")) var warmupEpochs: Float = 0
    @Option(name: .customLong("label-smoothing")) var labelSmoothing: Float = 0
    @Option(name: .customLong("distill-from"), help: "Teacher model for distillation (e.g. the model before pruning).") var distillFrom: String?
    @Option(name: .customLong("distill-weight")) var distillWeight: Float = 0.5
    @Option var temperature: Float = 4
    @Option(name: .customLong("crop-padding"), help: "Random crop after padding by N pixels.") var cropPadding = 0
    @Flag var flip = false
    @Option(parsing: .upToNextOption, help: "Per-channel mean to subtract.") var mean: [Float] = []
    @Option(parsing: .upToNextOption, help: "Per-channel std to divide by.") var std: [Float] = []
    @Option var seed: UInt64 = 0
    @Option var threads = 2
    @Option(help: "Checkpoint file written after every epoch.") var checkpoint: String?
    @Flag(help: "Continue from --checkpoint if it exists.") var resume = false

    func validate() throws {
        guard OptimizerKind(rawValue: optimizer) != nil else { throw ValidationError("--optimizer must be sgd or adamw") }
        guard ScheduleKind(rawValue: schedule) != nil else { throw ValidationError("--schedule must be constant, step or cosine") }
        guard epochs > 0, batch > 0 else { throw ValidationError("--epochs and --batch must be positive") }
        if resume && checkpoint == nil { throw ValidationError("--resume needs --checkpoint") }
    }

    func run() throws {
        try runReportingErrors {
            let m = try ModelFile.load(model)
            var options = TrainingOptions()
            options.epochs = epochs
            options.batch = batch
            options.seed = seed
            options.threads = threads
            options.optimizer = OptimizerOptions(kind: OptimizerKind(rawValue: optimizer)!, momentum: momentum, nesterov: nesterov, weightDecay: weightDecay)
            options.schedule = Schedule(kind: ScheduleKind(rawValue: schedule)!, lr: lr, stepEpochs: stepEpochs, gamma: gamma, warmupEpochs: warmupEpochs)
            options.loss = LossOptions(labelSmoothing: labelSmoothing, distillWeight: distillFrom == nil ? 0 : distillWeight, temperature: temperature)
            options.cropPadding = cropPadding
            options.flip = flip
            let teacher = try distillFrom.map { try ModelFile.load($0) }
            let trainer = try Trainer(model: m, options: options, teacher: teacher)
            var trainSet = try Dataset.load(train, channels: nil)
            var valSet = try val.map { try Dataset.load($0, channels: nil) }
            trainSet.normalise(mean: mean, std: std.isEmpty ? mean.map { _ in 1 } : std)
            valSet?.normalise(mean: mean, std: std.isEmpty ? mean.map { _ in 1 } : std)
            let printer = ProgressPrinter()
            let reports = try trainer.fit(train: trainSet, validation: valSet, checkpoint: checkpoint, resume: resume, progress: printer.update)
            for r in reports {
                var line = String(format: "epoch %d: train loss %.4f, train top-1 %.4f, %.0f samples/s", r.epoch, r.trainLoss, r.trainTop1, r.samplesPerSecond)
                if let v = r.validation { line += String(format: "; val top-1 %.4f, top-5 %.4f, loss %.4f", v.top1, v.top5, v.loss) }
                print(line)
            }
            trainer.writeBack(into: m)
            try ModelFile.save(m, to: out)
            print("wrote \(out)")
        }
    }
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "eval", abstract: "Top-1, top-5 and loss of a model on a labelled dataset.")

    @Argument(help: "The ONNX model.") var model: String
    @Option(help: "An NPZ (arrays x, y) or an …-images-idx3-ubyte[.gz] file.") var data: String
    @Option var batch = 64
    @Option var threads = 2
    @Option(parsing: .upToNextOption) var mean: [Float] = []
    @Option(parsing: .upToNextOption) var std: [Float] = []
    @Flag(help: "Print JSON.") var json = false

    func run() throws {
        try runReportingErrors {
            let m = try ModelFile.load(model)
            var d = try Dataset.load(data, channels: nil)
            d.normalise(mean: mean, std: std.isEmpty ? mean.map { _ in 1 } : std)
            let metrics = try Evaluator.evaluate(model: m, data: d, batch: batch, threads: threads)
            if json {
                let e = JSONEncoder()
                e.outputFormatting = [.sortedKeys]
                print(String(decoding: try e.encode(metrics), as: UTF8.self))
            } else {
                print(String(format: "%@: top-1 %.4f  top-5 %.4f  loss %.4f  (%d samples)", data, metrics.top1, metrics.top5, metrics.loss, metrics.samples))
            }
        }
    }
}

struct InferCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "infer", abstract: "Run a model with the engine on a .npy batch and write the first output as .npy.")

    @Argument(help: "The ONNX model.") var model: String
    @Option(help: "Input batch (.npy, float32, N × sample shape).") var input: String
    @Option(help: "Where to write the output (.npy).") var output: String
    @Option var threads = 2

    func run() throws {
        try runReportingErrors {
            let m = try ModelFile.load(model)
            let x = try ArrayIO.readNPY(input)
            guard let n = x.shape.first, n > 0 else { throw DataError(input, "empty batch") }
            setComputeThreads(threads)
            let program = try Program(model: m, batch: n, trainable: false)
            do { try program.requireInput(Array(x.shape.dropFirst())) } catch { throw DataError(input, "\(error)") }
            let out = x.floats.withUnsafeBufferPointer { Array(program.forward($0)) }
            try ArrayIO.writeNPY(output, shape: program.outputShape, values: out)
        }
    }
}
