import TopiaryEngine
import TopiaryIR
import TopiaryPruning

/// Layer-by-layer reconstruction after pruning (`reconstruct: true`, `topiary prune --reconstruct`):
/// in schedule order, every Conv (group 1) and Gemm of the pruned model is refitted by ridge
/// regression so that, on calibration batches, its output from the pruned network's own input
/// matches what the unpruned model's layer outputs at the kept channels (`Compensation.refit`).
/// Each layer is measured after the ones before it were refitted, so it also corrects what they
/// could not. Depthwise and grouped convolutions are left as they are.
public enum Reconstruction {
    /// Refits `pruned` in place against `teacher` (the model it was pruned from; `kept` as in
    /// `PruningResult.keptChannels`), and `masked` (its same-shaped masked twin) the same way.
    /// Returns how many layers were refitted; `progress` hears (layers done, layers in all) after each.
    @discardableResult
    public static func run(pruned: Model, teacher: Model, kept: [String: [Int]], data: Dataset, masked: Model? = nil, batches: Int = 4,
                           damping: Double = 1e-2, threads: Int = 2, seed: UInt64 = 0, progress: ((Int, Int) -> Void)? = nil) throws -> Int {
        let probe = try LayerFitProbe(student: pruned, teacher: teacher, kept: kept, data: data, batches: batches, seed: seed, threads: threads)
        var refitted = 0
        for (i, name) in probe.layers.enumerated() {
            if let stats = probe.statistics(of: name), let layer = LayerWeights.find(name, in: pruned.graph), layer.m == stats.m, layer.k == stats.k,
               let fit = Compensation.refit(w: layer.matrix, offset: layer.offset(from: LayerWeights.find(name, in: teacher.graph), rows: kept[layer.output] ?? Array(0..<layer.m)),
                                            m: layer.m, k: layer.k, a: stats.a, c: stats.c, damping: damping, withConstant: layer.hasConstant) {
                let written = layer.write(fit.w, constant: fit.bias, into: pruned.graph)
                probe.load(written)
                if let masked {
                    guard let twin = LayerWeights.find(name, in: masked.graph),
                          twin.scatter(written, pruned: layer, rows: kept[layer.output] ?? Array(0..<layer.m), channels: kept[layer.input] ?? Array(0..<layer.k),
                                       into: masked.graph) else {
                        throw IRError.unsupported("reconstruction: the refit of '\(name)' does not map onto the masked model")
                    }
                }
                refitted += 1
            }
            progress?(i + 1, probe.layers.count)
        }
        return refitted
    }
}
