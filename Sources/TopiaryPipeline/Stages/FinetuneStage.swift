import Foundation
import TopiaryEngine
import TopiaryIR
import TopiaryPruning

/// `finetune: {epochs, batch, optimizer, lr, …, distill}`: trains the current model on the
/// training data, optionally distilling from the model as it was before the latest pruning. A
/// checkpoint after every epoch lets `--resume` continue inside the stage.
public struct FinetuneStage: PipelineStage {
    public static let key = "finetune"
    public static let keys = ["epochs", "batch", "optimizer", "lr", "momentum", "nesterov", "weight_decay", "schedule", "step_epochs", "gamma",
                              "warmup_epochs", "label_smoothing", "distill", "distill_weight", "temperature", "distill_features", "crop_padding", "flip",
                              "soft_prune", "gradual_prune"]
    var options = TrainingOptions()
    let distill: Bool
    /// Soft filter pruning: every `every` epochs zero the lowest-L2 channels of each group at
    /// `ratio`, let them train and recover, and remove the zeroed ones for real at the end.
    let softPrune: (ratio: Double, every: Int)?
    /// Gradual pruning: a prune stage's channels masked over the first part of training.
    let gradual: GradualPruning?

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        guard context.spec.train else { throw node.error("finetune needs training data: add data.train to the pipeline") }
        options.epochs = try fields.int("epochs") ?? 1
        options.batch = try fields.int("batch") ?? 64
        guard options.epochs >= 1 else { throw fields["epochs"]!.error("epochs must be ≥ 1") }
        guard options.batch >= 1 else { throw fields["batch"]!.error("batch must be ≥ 1") }
        let opt = try fields.string("optimizer") ?? "sgd"
        guard let kind = OptimizerKind(rawValue: opt) else { throw fields["optimizer"]!.error("optimizer must be sgd or adamw") }
        options.optimizer = OptimizerOptions(kind: kind, momentum: try fields.float("momentum") ?? 0.9, nesterov: try fields.bool("nesterov") ?? false,
                                             weightDecay: try fields.float("weight_decay") ?? (kind == .adamw ? 0.01 : 0))
        let sched = try fields.string("schedule") ?? "cosine"
        guard let sk = ScheduleKind(rawValue: sched) else { throw fields["schedule"]!.error("schedule must be constant, step or cosine") }
        let lr = try fields.float("lr") ?? (kind == .adamw ? 0.001 : 0.01)
        guard lr > 0 else { throw fields["lr"]!.error("lr must be positive") }
        options.schedule = Schedule(kind: sk, lr: lr, stepEpochs: try fields.int("step_epochs") ?? 1, gamma: try fields.float("gamma") ?? 0.1,
                                    warmupEpochs: try fields.float("warmup_epochs") ?? 0)
        distill = try fields.bool("distill") ?? false
        if let gn = fields["gradual_prune"] {
            if let sp = fields["soft_prune"] { throw sp.error("soft_prune and gradual_prune cannot be combined") }
            gradual = try GradualPruning(node: gn, context: &context)
        } else {
            gradual = nil
        }
        if distill && !context.pruned { throw fields["distill"]!.error("distill needs an earlier prune stage (the teacher is the model before pruning)") }
        options.loss = LossOptions(labelSmoothing: try fields.float("label_smoothing") ?? 0, distillWeight: distill ? try fields.float("distill_weight") ?? 0.5 : 0,
                                   temperature: try fields.float("temperature") ?? 4, featureWeight: try fields.float("distill_features") ?? 0)
        if let f = fields["distill_features"] {
            guard options.loss.featureWeight >= 0 else { throw f.error("distill_features must be ≥ 0 (the weight of feature distillation)") }
            guard distill else { throw f.error("distill_features needs distill: true (the features come from the same teacher)") }
        }
        guard (0..<1).contains(options.loss.labelSmoothing) else { throw fields["label_smoothing"]!.error("label_smoothing must be in [0, 1)") }
        options.cropPadding = try fields.int("crop_padding") ?? 0
        options.flip = try fields.bool("flip") ?? false
        if let sp = fields["soft_prune"] {
            let f = try sp.mapping(allowed: ["ratio", "every"])
            guard let r = try f.double("ratio") else { throw sp.error("soft_prune needs a ratio (fraction of each group's channels to zero)") }
            guard r > 0 && r < 1 else { throw f["ratio"]!.error("ratio must be in (0, 1)") }
            let every = try f.int("every") ?? 1
            guard every >= 1 else { throw f["every"]!.error("every must be ≥ 1") }
            softPrune = (r, every)
            context.pruned = true
        } else {
            softPrune = nil
        }
    }

    public var resolved: [String: Any] {
        ["epochs": options.epochs, "batch": options.batch, "optimizer": options.optimizer.kind.rawValue, "lr": options.schedule.lr,
         "momentum": options.optimizer.momentum, "nesterov": options.optimizer.nesterov, "weight_decay": options.optimizer.weightDecay,
         "schedule": options.schedule.kind.rawValue, "step_epochs": options.schedule.stepEpochs, "gamma": options.schedule.gamma,
         "warmup_epochs": options.schedule.warmupEpochs, "label_smoothing": options.loss.labelSmoothing, "distill": distill,
         "distill_weight": options.loss.distillWeight, "temperature": options.loss.temperature,
         "distill_features": options.loss.featureWeight, "crop_padding": options.cropPadding, "flip": options.flip]
            .merging(softPrune.map { ["soft_prune": ["ratio": $0.ratio, "every": $0.every]] } ?? [:]) { a, _ in a }
            .merging(gradual.map { ["gradual_prune": $0.prune.resolved.merging(["steps": $0.steps, "until": $0.until]) { a, _ in a }] } ?? [:]) { a, _ in a }
    }

    public var label: String {
        "finetune \(options.epochs) epoch(s)" + (distill ? (options.loss.featureWeight > 0 ? " with feature distillation" : " with distillation") : "") + (softPrune.map { " with soft pruning at \($0.ratio)" } ?? "")
            + (gradual.map { " with gradual pruning to \($0.prune.targetText)" } ?? "")
    }

    public func run(_ run: RunContext, index: Int) throws {
        if let gradual { return try runGradual(run, index: index, gradual) }
        guard let sp = softPrune else {
            try train(run.model, teacher: distill ? run.teacher : nil, channels: run.teacherChannels, run: run,
                      checkpoint: run.statePath("stage\(index).ckpt"), record: index)
            return
        }
        // Soft filter pruning (SFP): the model keeps its shape while training; zeroed filters may grow back.
        var teacher: Model?
        let olderTeacher = run.teacher != nil
        if distill { teacher = try run.teacher ?? Pruner.copy(run.model) }
        try Pruner.prepare(run.model)
        let prune = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .ratio(sp.ratio), strategy: .uniform))
        var o = options
        o.seed = run.spec.seed
        o.threads = run.spec.threads
        let trainer = try Trainer(model: run.model, options: o, teacher: teacher, teacherChannels: olderTeacher ? run.teacherChannels : [:])
        var previous: [String: [Int]] = [:]
        var soft = RunRecord.SoftPruning(stage: index, ratio: sp.ratio, rounds: [])
        let reports = try trainer.fit(train: try run.dataset("train"), validation: run.spec.data.val != nil ? try run.dataset("val") : nil,
                                      checkpoint: run.statePath("stage\(index).ckpt"), resume: run.resume, progress: run.progress, afterEpoch: { epoch in
            guard epoch % sp.every == 0 else { return }
            trainer.writeBack(into: run.model)
            // How many of the filters zeroed last time grew back, and how many are no longer chosen.
            let initializers = Dictionary(run.model.graph.initializers.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            var regrown = 0, zeroedBefore = 0
            for (name, positions) in previous {
                guard let t = initializers[name], let v = t.floatValues(), let rows = t.dims.first, rows > 0 else { continue }
                let per = v.count / rows
                for p in positions {
                    zeroedBefore += 1
                    if v[(p * per)..<((p + 1) * per)].contains(where: { $0 != 0 }) { regrown += 1 }
                }
            }
            let zeroed = try Pruner.mask(run.model, options: prune).filters
            let kept = previous.reduce(0) { acc, e in acc + e.value.filter { !(zeroed[e.key]?.contains($0) ?? false) }.count }
            soft.rounds.append(.init(epoch: epoch, zeroed: zeroed.values.reduce(0) { $0 + $1.count }, regrown: regrown, previouslyZeroed: zeroedBefore, revived: kept))
            previous = zeroed
            trainer.load(from: run.model)
        })
        trainer.writeBack(into: run.model)
        run.record.finetune.append(.init(stage: index, epochs: reports))
        let result = try Pruner.prune(run.model, options: prune)
        run.pruned(keeping: result.keptChannels, freshTeacher: !olderTeacher)
        run.record.softPruning.append(soft)
        run.record.pruning.append(.init(stage: index, criterion: "l2 (soft)", target: "ratio \(sp.ratio)", before: result.before, after: result.after, groups: result.widths))
        run.teacher = teacher
        run.log("soft pruning: " + soft.rounds.map { "epoch \($0.epoch): zeroed \($0.zeroed), \($0.regrown) of \($0.previouslyZeroed) regrown, \($0.revived) revived" }.joined(separator: "; "))
    }

    /// Gradual pruning: round i of n masks the channels a prune to the i-th step of the target
    /// would remove (those masked before first), holds them at zero while the rest trains, and the
    /// masked channels are removed for real when training ends.
    func runGradual(_ run: RunContext, index: Int, _ gradual: GradualPruning) throws {
        let original = try Pruner.copy(run.model)
        try Pruner.prepare(run.model)
        var o = options
        o.seed = run.spec.seed
        o.threads = run.spec.threads
        let trainer = try Trainer(model: run.model, options: o, teacher: distill ? original : nil)
        var done = 0
        var masked: [String: [Int]] = [:]
        var record = RunRecord.GradualPruning(stage: index, steps: gradual.steps, until: gradual.until, rounds: [])
        func round(_ due: Int, at progress: Double) throws {
            trainer.writeBack(into: run.model)
            var prune = try gradual.prune.runOptions(run)
            prune.allocation.target = gradual.target(due)
            prune.pinned = masked
            let m: MaskedChannels
            do {
                m = try Pruner.mask(run.model, options: prune, calibration: try gradual.prune.calibration(run))
            } catch let e as UnreachableTarget {
                if let n = gradual.prune.targetNode { throw n.error(e.description) }
                throw e
            }
            masked = m.filters
            trainer.heldAtZero = m.zeroed
            done = due
            let count = masked.values.reduce(0) { $0 + $1.count }
            record.rounds.append(.init(progress: progress, target: gradual.text(due), masked: count, flopsKept: m.flopsKept, paramsKept: m.paramsKept))
            run.log(String(format: "gradual pruning round %d/%d at %.0f%% of training: %d channels masked, FLOPs %.3f kept", due, gradual.steps, progress * 100, count, m.flopsKept))
        }
        let reports = try trainer.fit(train: try run.dataset("train"), validation: run.spec.data.val != nil ? try run.dataset("val") : nil,
                                      checkpoint: run.statePath("stage\(index).ckpt"), resume: run.resume, progress: run.progress, beforeStep: { t in
            let due = gradual.roundsDue(at: t)
            if due > done { try round(due, at: t) }
        })
        // Fewer steps than rounds before `until`: the rest at the end, untrained.
        if done < gradual.steps { try round(gradual.steps, at: 1) }
        trainer.writeBack(into: run.model)
        run.record.finetune.append(.init(stage: index, epochs: reports))
        let result = try Pruner.prune(run.model, options: try gradual.prune.runOptions(run), exactly: masked)
        run.pruned(keeping: result.keptChannels, freshTeacher: true)
        run.record.gradualPruning.append(record)
        run.record.pruning.append(.init(stage: index, criterion: gradual.prune.criterion + " (gradual)", target: gradual.prune.targetText,
                                        before: result.before, after: result.after, groups: result.widths))
        run.teacher = original
        if let last = reports.last {
            run.log(String(format: "trained %d epoch(s) with gradual pruning: train loss %.4f, FLOPs %.3f kept", reports.count, last.trainLoss,
                           Double(result.after.flops) / Double(max(result.before.flops, 1))))
        }
    }

    /// Trains `model` in place.
    func train(_ model: Model, teacher: Model?, channels: [String: [Int]], run: RunContext, checkpoint: String?, record index: Int?) throws {
        var o = options
        o.seed = run.spec.seed
        o.threads = run.spec.threads
        let trainer = try Trainer(model: model, options: o, teacher: teacher, teacherChannels: channels)
        if !trainer.distilledFeatures.isEmpty { run.log("distilling \(trainer.distilledFeatures.count) feature map(s) from the teacher") }
        let val = run.spec.data.val != nil ? try run.dataset("val") : nil
        let reports = try trainer.fit(train: try run.dataset("train"), validation: val, checkpoint: checkpoint, resume: run.resume, progress: run.progress)
        trainer.writeBack(into: model)
        if let index { run.record.finetune.append(.init(stage: index, epochs: reports)) }
        if let last = reports.last {
            var line = String(format: "trained %d epoch(s): train loss %.4f", reports.count, last.trainLoss)
            if let v = last.validation { line += String(format: ", val top-1 %.4f", v.top1) }
            run.log(line)
        }
    }
}

/// `sweep: {targets, criteria, prune, finetune}`: the same pruning (and optional fine-tuning) for
/// every target × criterion, each from the current model, evaluated side by side. The current
/// model is left as it was.
public struct SweepStage: PipelineStage {
    public static let key = "sweep"
    public static let keys = ["targets", "criteria", "prune", "finetune"]
    let targets: [(PruningTarget, String, SpecNode)]
    let criteria: [String]
    let prune: [String: SpecNode]
    let pruneNode: SpecNode
    let finetune: FinetuneStage?

    public init(fields: [String: SpecNode], node: SpecNode, context: inout SpecContext) throws {
        guard let t = fields["targets"] else { throw node.error("sweep needs targets: a list of {flops: F} / {params: P} / {ratio: R}") }
        targets = try t.sequence().map { n in let (target, text) = try parseTarget(n); return (target, text, n) }
        guard !targets.isEmpty else { throw t.error("targets is empty") }
        criteria = try fields["criteria"]?.strings() ?? ["l2"]
        for (i, c) in criteria.enumerated() {
            do { _ = try Criteria.parse(c) } catch { throw (try fields["criteria"]!.sequence()[i]).error("\(error)") }
        }
        pruneNode = fields["prune"] ?? node
        prune = try fields["prune"]?.mapping(allowed: PruneStage.keys.filter { $0 != "target" && $0 != "criterion" }) ?? [:]
        var inner = context
        inner.pruned = true
        finetune = try fields["finetune"].map { f in
            let ff = try f.mapping(allowed: FinetuneStage.keys)
            return try FinetuneStage(fields: ff, node: f, context: &inner)
        }
        _ = try stage(targets[0], criteria[0], context: &inner)
    }

    func stage(_ t: (PruningTarget, String, SpecNode), _ criterion: String, context: inout SpecContext) throws -> PruneStage {
        var s = try PruneStage(fields: prune, node: pruneNode, context: &context, given: t)
        s.criterion = criterion
        return s
    }

    public var resolved: [String: Any] {
        var out: [String: Any] = ["targets": targets.map { $0.1 }, "criteria": criteria]
        if let f = finetune { out["finetune"] = f.resolved }
        return out
    }

    public var label: String { "sweep \(targets.count) target(s) × \(criteria.count) criterion(a)" }

    public func run(_ run: RunContext, index: Int) throws {
        let (base, _) = try CostModel.analyse(run.model)
        var points: [RunRecord.SweepPoint] = []
        var context = SpecContext(spec: DataAvailability(train: run.spec.data.train != nil, val: run.spec.data.val != nil), directory: run.spec.directory)
        for criterion in criteria {
            for t in targets {
                let model = try Pruner.copy(run.model)
                let teacher = try Pruner.copy(run.model)
                let p = try stage(t, criterion, context: &context)
                let result = try Pruner.prune(model, options: try p.runOptions(run), calibration: try p.calibration(run))
                if let f = finetune { try f.train(model, teacher: f.distill ? teacher : nil, channels: result.keptChannels, run: run, checkpoint: nil, record: nil) }
                var point = RunRecord.SweepPoint(criterion: criterion, target: t.1, flops: result.after.flops, params: result.after.params)
                if run.spec.data.val != nil {
                    let m = try Evaluator.evaluate(model: model, data: try run.dataset("val"), threads: run.spec.threads)
                    (point.top1, point.loss) = (m.top1, m.loss)
                }
                points.append(point)
                run.log(String(format: "sweep %@ %@: FLOPs %.3f kept", criterion, t.1, Double(result.after.flops) / Double(max(base.totals.flops, 1)))
                        + (point.top1.map { String(format: ", val top-1 %.4f", $0) } ?? ""))
            }
        }
        run.record.sweeps.append(.init(stage: index, points: points, baselineFlops: base.totals.flops))
    }
}

/// `gradual_prune: {criterion, target, allocation, …, steps, until}` inside a finetune stage: a
/// prune stage's settings, reached in `steps` rounds spread over the first `until` of training.
/// Round i removes 1 − (1 − i/steps)³ of what the whole target removes (Zhu and Gupta's cubic
/// schedule: most early, while the learning rate is high).
struct GradualPruning {
    let prune: PruneStage
    let steps: Int
    let until: Double

    init(node: SpecNode, context: inout SpecContext) throws {
        var fields = try node.mapping(allowed: PruneStage.keys + ["steps", "until"])
        steps = try fields.int("steps") ?? 4
        until = try fields.double("until") ?? 0.5
        guard steps >= 1 else { throw fields["steps"]!.error("steps must be ≥ 1") }
        guard until >= 0 && until < 1 else { throw fields["until"]!.error("until must be in [0, 1): the fraction of training by which the target is reached") }
        if try fields.string("allocation") == "search" { throw fields["allocation"]!.error("gradual_prune does not take allocation: search (a search per round)") }
        if try fields.bool("compensate") == true { throw fields["compensate"]!.error("gradual_prune does not take compensate (masked channels keep their weights until the end)") }
        if try fields.bool("reconstruct") == true { throw fields["reconstruct"]!.error("gradual_prune does not take reconstruct (masked channels keep their weights until the end)") }
        fields["steps"] = nil
        fields["until"] = nil
        prune = try PruneStage(fields: fields, node: node, context: &context)
    }

    /// Fraction of the target's removal reached at round `i` (1-based).
    func share(_ i: Int) -> Double { 1 - pow(1 - Double(i) / Double(steps), 3) }

    func target(_ i: Int) -> PruningTarget {
        switch prune.target {
        case .ratio(let r): return .ratio(r * share(i))
        case .flops(let f): return .flops(1 - (1 - f) * share(i))
        case .params(let p): return .params(1 - (1 - p) * share(i))
        }
    }

    func text(_ i: Int) -> String {
        switch target(i) {
        case .ratio(let r): return String(format: "ratio %.4g", r)
        case .flops(let f): return String(format: "flops %.4g", f)
        case .params(let p): return String(format: "params %.4g", p)
        }
    }

    /// Rounds whose time has come at `progress` (round 1 at the start, the last at `until`).
    func roundsDue(at progress: Double) -> Int {
        guard steps > 1, until > 0 else { return steps }
        return min(steps, Int((progress / until * Double(steps - 1) + 1e-9).rounded(.down)) + 1)
    }
}
