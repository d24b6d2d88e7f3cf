import Foundation
import TopiaryIR

/// Fitness of a candidate width configuration for the evolutionary search: BatchNorm statistics
/// recalibrated on a few training batches, then top-1 accuracy (ties broken by loss) on held-out
/// samples, all on the masked model.
public enum SearchFitness {
    public static func make(train: Dataset, validation: Dataset?, batch: Int = 64, recalibrationBatches: Int = 2, evaluationSamples: Int = 256,
                            threads: Int = 2, seed: UInt64 = 0) -> @Sendable (Model) throws -> Double {
        var rng = SplitMix(seed: seed)
        let order = rng.permutation(train.count)
        let b = min(batch, train.count)
        let sample = train.sampleSize
        let recal = train.batches(max(1, min(recalibrationBatches, train.count / max(b, 1))), size: b, order: order)
        let held: Dataset = {
            if let validation { return validation }
            let picks = order.suffix(min(evaluationSamples, train.count))
            var images: [Float] = []
            images.reserveCapacity(picks.count * sample)
            for i in picks { images.append(contentsOf: train.images[(i * sample)..<((i + 1) * sample)]) }
            return Dataset(images: images, labels: picks.map { train.labels[$0] }, sampleShape: train.sampleShape, classes: train.classes)
        }()
        return { model in
            setComputeThreads(threads)
            let program = try Program(model: model, batch: b, trainable: true)
            program.recalibrateBatchNorm(recal)
            let m = try Evaluator.evaluate(program, held)
            return m.top1 - 1e-4 * m.loss
        }
    }
}
