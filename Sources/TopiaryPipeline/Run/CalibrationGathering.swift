import TopiaryEngine
import TopiaryIR
import TopiaryPruning

extension CalibrationData {
    /// What `options` needs measured on `data`, gathered with the engine: gradients and Taylor
    /// statistics (and K-FAC factors for `hessian`, `obs` and `compensate`) for data-driven criteria, layer HSIC for the
    /// `hsic` allocation; nil when it needs nothing. One place for the command line and pipelines.
    public static func gather(for options: PruningOptions, model: Model, data: () throws -> Dataset, batches: Int,
                              threads: Int = 2, seed: UInt64 = 0) throws -> CalibrationData? {
        let needsGradients = !options.criterion.requirements.isEmpty || options.compensate
        let needsHSIC = options.allocation.strategy == .hsic
        guard needsGradients || needsHSIC else { return nil }
        let d = try data()
        var c = CalibrationData()
        if needsGradients {
            let g = try Calibration.gather(model: model, data: d, batches: batches, threads: threads, seed: seed, kfac: options.criterion.requirements.contains(.inputMoments) || options.compensate)
            c = CalibrationData(channelTaylor: g.channelTaylor, filterGradientNorm: g.filterGradientNorm, batches: g.batches,
                                kfac: g.kfac.mapValues { KFACFactors(k: $0.k, m: $0.m, a: $0.a, g: $0.g, mean: $0.mean) })
        }
        if needsHSIC { c.layerImportance = try HSIC.layerImportance(model: model, data: d, threads: threads, seed: seed) }
        return c
    }
}
