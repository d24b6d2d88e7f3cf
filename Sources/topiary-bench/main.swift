// Timing harness for bench/ (not a test). Prints one JSON line of seconds.
//   topiary-bench io MODEL OUT REPEATS        load and save
//   topiary-bench prune MODEL RATIO REPEATS   analyse and prune (L2, uniform), model loaded untimed
//   topiary-bench train MODEL BATCH STEPS     forward + backward + SGD step on random data
//   topiary-bench infer MODEL BATCH STEPS     inference
import Foundation
import TopiaryIR
import TopiaryPruning
import TopiaryEngine

func seconds(_ body: () throws -> Void) rethrows -> Double {
    let start = DispatchTime.now().uptimeNanoseconds
    try body()
    return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
}

func emit(_ object: [String: Any]) throws {
    let json = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    print(String(decoding: json, as: UTF8.self))
}

let args = CommandLine.arguments
guard args.count == 5, let repeats = Int(args[4]) else {
    FileHandle.standardError.write(Data("usage: topiary-bench io MODEL OUT REPEATS | prune MODEL RATIO REPEATS\n".utf8))
    exit(2)
}
switch args[1] {
case "io":
    var loads: [Double] = []
    var saves: [Double] = []
    for _ in 0..<repeats {
        var model: Model?
        loads.append(try seconds { model = try ModelFile.load(args[2], validate: false) })
        if let model { saves.append(try seconds { try ModelFile.save(model, to: args[3], externalData: .inline) }) }
    }
    try emit(["load": loads, "save": saves])
case "prune":
    guard let ratio = Double(args[3]) else { exit(2) }
    var analyse: [Double] = []
    var total: [Double] = []
    var result: PruningResult?
    var kept: [PruningResult] = []  // freed after the loop, so no timing pays for releasing an earlier run's model
    for _ in 0..<repeats {
        let model = try ModelFile.load(args[2])
        let probe = try Pruner.copy(model)
        analyse.append(try seconds {
            try Pruner.prepare(probe)
            _ = try DependencyAnalysis(model: probe)
        })
        let options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(ratio)))
        total.append(try seconds { result = try Pruner.prune(model, options: options) })
        if let result { kept.append(result) }
    }
    guard let result else { exit(1) }
    for (phase, t) in result.timings { FileHandle.standardError.write(Data("\(phase): \(String(format: "%.2f", t * 1e3)) ms\n".utf8)) }
    try emit(["analyse": analyse, "prune": total, "params_before": result.before.params, "params_after": result.after.params,
              "macs_before": result.before.macs, "macs_after": result.after.macs])
case "prune-loop":
    // For a profiler: REPEATS copies decoded first, then pruned one after another.
    guard let ratio = Double(args[3]) else { exit(2) }
    let bytes = try ModelFile.encode(try ModelFile.load(args[2]))
    let copies = try (0..<repeats).map { _ in try bytes.withUnsafeBytes { try ModelFile.decode($0) } }
    let options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(ratio)))
    var phases: [String: Double] = [:]
    var results: [PruningResult] = []
    // TOPIARY_PERF_CTL names a `perf record --control fifo:` control file: only the prunes are recorded.
    let control = ProcessInfo.processInfo.environment["TOPIARY_PERF_CTL"].flatMap { FileHandle(forWritingAtPath: $0) }
    control?.write(Data("enable\n".utf8))
    let t = try seconds { for m in copies { results.append(try Pruner.prune(m, options: options)) } }
    control?.write(Data("disable\n".utf8))
    for r in results { for (phase, s) in r.timings { phases[phase, default: 0] += s * 1e3 / Double(repeats) } }
    try emit(["prune": t / Double(repeats), "phases_ms": phases])
case "phases":
    let model = try ModelFile.load(args[2])
    try Pruner.prepare(model)
    for _ in 0..<repeats {
        let a = try seconds { _ = try ShapeInference.run(model) }
        let b = try seconds { _ = try model.graph.topologicalOrder() }
        let c = seconds { _ = model.graph.constants() }
        let d = try seconds { _ = try CostModel.analyse(model) }
        let e = try seconds { _ = try DependencyAnalysis(model: model) }
        try emit(["shapes": a, "topo": b, "constants": c, "cost": d, "analysis": e])
    }
case "train", "infer":
    guard let batch = Int(args[3]) else { exit(2) }
    setComputeThreads(2)
    let model = try ModelFile.load(args[2])
    let training = args[1] == "train"
    var options = TrainingOptions()
    options.batch = batch
    let trainer = training ? try Trainer(model: model, options: options) : nil
    let program = training ? nil : try Program(model: model, batch: batch, trainable: false)
    let inputShape = trainer?.inputShape ?? program!.inputShape
    let classes = (trainer?.outputShape ?? program!.outputShape).last ?? 1
    var rng = SplitMix(seed: 1)
    let x = (0..<(batch * inputShape.reduce(1, *))).map { _ in Float(rng.nextUnit() * 2 - 1) }
    let labels = (0..<batch).map { _ in Int32(rng.below(classes)) }
    let data = Dataset(images: x, labels: labels, sampleShape: inputShape, classes: classes)
    var times: [Double] = []
    for _ in 0..<(repeats + 2) {
        if let trainer {
            times.append(try seconds { _ = try trainer.fitSteps(data) })
        } else if let program {
            times.append(seconds { _ = x.withUnsafeBufferPointer { program.forward($0) } })
        }
    }
    if let trainer, ProcessInfo.processInfo.environment["TOPIARY_PROFILE"] != nil {
        for (k, t) in trainer.profile(data) { FileHandle.standardError.write(Data("\(k): \(String(format: "%.3f", t * 1e3)) ms\n".utf8)) }
    }
    if let program {
        for (k, t) in x.withUnsafeBufferPointer({ program.profileForward($0) }) { FileHandle.standardError.write(Data("\(k): \(String(format: "%.3f", t * 1e3)) ms\n".utf8)) }
    }
    try emit(["seconds": Array(times.dropFirst(2)), "batch": batch])
default:
    exit(2)
}
