import Foundation
import TopiaryEngine
import TopiaryIR

/// The state a running pipeline shares between stages: the current model, the model before the
/// latest pruning (a distillation teacher), the data, the output folder and the record.
public final class RunContext {
    public let spec: PipelineSpec
    public let outDir: String
    public internal(set) var model: Model
    var teacher: Model?
    /// For the teacher's feature maps that lost channels since: the teacher positions of the
    /// current model's channels (feature distillation).
    var teacherChannels: [String: [Int]] = [:]
    public internal(set) var record: RunRecord
    let log: (String) -> Void
    let progress: ((TrainingProgress) -> Void)?
    /// Resuming: stages may continue from their checkpoints.
    let resume: Bool
    private var datasets: [String: Dataset] = [:]

    init(spec: PipelineSpec, outDir: String, model: Model, record: RunRecord, resume: Bool, log: @escaping (String) -> Void, progress: ((TrainingProgress) -> Void)?) {
        self.spec = spec
        self.outDir = outDir
        self.model = model
        self.record = record
        self.resume = resume
        self.log = log
        self.progress = progress
    }

    /// A file in the run's state folder.
    func statePath(_ name: String) -> String { outDir + "/state/" + name }

    /// A file in the output folder (`name` relative to it unless absolute).
    func outputPath(_ name: String) -> String { name.hasPrefix("/") ? name : outDir + "/" + name }

    /// The training or validation set, loaded once and normalised as the pipeline says.
    func dataset(_ which: String) throws -> Dataset {
        if let d = datasets[which] { return d }
        guard let path = which == "train" ? spec.data.train : spec.data.val else {
            throw EngineError.data("the pipeline declares no \(which) data")
        }
        var d = try Dataset.load(path)
        if !spec.data.mean.isEmpty { d.normalise(mean: spec.data.mean, std: spec.data.std.isEmpty ? spec.data.mean.map { _ in 1 } : spec.data.std) }
        datasets[which] = d
        return d
    }

    /// Records a pruning of the current model: with `freshTeacher` the teacher is the model just
    /// before it, otherwise the older teacher stays and the channel maps compose.
    func pruned(keeping kept: [String: [Int]], freshTeacher: Bool) {
        guard !freshTeacher else {
            teacherChannels = kept
            return
        }
        for (name, positions) in kept {
            let older = teacherChannels[name]
            teacherChannels[name] = older.map { o in positions.map { o[$0] } } ?? positions
        }
    }

    /// Replaces the current model.
    func replaceModel(_ m: Model) { model = m }
}
