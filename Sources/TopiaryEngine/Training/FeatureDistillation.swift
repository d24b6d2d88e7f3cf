import Foundation
import TopiaryIR

/// Feature distillation for a pruned student: every feature map a layer reads (the data input of
/// each Conv, Gemm and MatMul) is pulled towards the same map in the unpruned teacher, restricted
/// to the channels pruning kept. Per map the loss is the squared difference relative to the
/// teacher's energy on those channels, Σ(s − t)² / Σt², so maps of every scale weigh alike; the
/// term added to the training loss is `weight` times the mean over maps.
final class FeatureDistillation {
    struct Match {
        let name: String
        /// Value ids in the student and teacher programs.
        let student: Int, teacher: Int
        /// Teacher channel of each student channel.
        let kept: [Int]
        let batch: Int, channels: Int, teacherChannels: Int, plane: Int
        /// d(term)/d(student map), written by `loss` and added by the backward pass.
        let grad: UnsafeMutablePointer<Float>
    }

    let matches: [Match]
    let weight: Float
    private let storage = Store()

    /// Matches the maps `model` (the student, as compiled into `student`) shares with `teacher`.
    /// `kept` gives, for maps that lost channels, the teacher positions of the student's channels;
    /// maps missing from it must have the teacher's shape. Maps that fit neither way are skipped.
    init(model: Model, student: Program, teacher: Program, kept: [String: [Int]], weight: Float) throws {
        self.weight = weight
        var seen = Set<String>(), matches: [Match] = []
        let graphInput = Set(model.graph.inputs.map(\.name))
        for node in model.graph.nodes where ["Conv", "Gemm", "MatMul"].contains(node.opType) {
            guard let name = node.input(0), !graphInput.contains(name), seen.insert(name).inserted,
                  let s = student.valueIDs[name], let t = teacher.valueIDs[name] else { continue }
            let ss = student.store.shapes[s], ts = teacher.store.shapes[t]
            guard ss.count >= 2, ss.count == ts.count, ss[0] == ts[0], Array(ss.dropFirst(2)) == Array(ts.dropFirst(2)),
                  student.store.grads[s] != nil else { continue }
            let map = kept[name] ?? Array(0..<ts[1])
            guard map.count == ss[1], map.allSatisfy({ $0 >= 0 && $0 < ts[1] }) else { continue }
            let grad = storage.allocate(ss.reduce(1, *))
            matches.append(Match(name: name, student: s, teacher: t, kept: map, batch: ss[0], channels: ss[1], teacherChannels: ts[1],
                                 plane: ss.dropFirst(2).reduce(1, *), grad: grad))
        }
        guard !matches.isEmpty else {
            throw EngineError.unsupported("feature distillation found no feature map the model shares with its teacher")
        }
        self.matches = matches
    }

    /// Gradients to add at the start of the backward pass.
    var seeds: [(id: Int, grad: UnsafePointer<Float>)] { matches.map { ($0.student, UnsafePointer($0.grad)) } }

    /// The weighted mean relative error of the last forward passes of both programs; writes each
    /// map's gradient.
    func loss(student: Program, teacher: Program) -> Double {
        var total = 0.0
        let scale = weight / Float(matches.count)
        for m in matches {
            let s = UnsafePointer(student.store.values[m.student]), t = UnsafePointer(teacher.store.values[m.teacher])
            let planes = m.batch * m.channels, p = m.plane
            // The teacher plane behind student plane i.
            func source(_ i: Int) -> UnsafePointer<Float> { t + ((i / m.channels) * m.teacherChannels + m.kept[i % m.channels]) * p }
            let parts = max(1, min(Parallel.workers, planes))
            var energy = [Double](repeating: 0, count: parts), error = [Double](repeating: 0, count: parts)
            energy.withUnsafeMutableBufferPointer { e in
                Parallel.blocks(of: planes, parts: parts) { part, range in
                    var sum = 0.0
                    for i in range {
                        let src = source(i)
                        var plane: Float = 0
                        for j in 0..<p { plane += src[j] * src[j] }
                        sum += Double(plane)
                    }
                    e[part] = sum
                }
            }
            let e = energy.reduce(0, +) + 1e-12 * Double(planes * p)
            let g = 2 * scale / Float(e)
            error.withUnsafeMutableBufferPointer { d in
                Parallel.blocks(of: planes, parts: parts) { part, range in
                    var sum = 0.0
                    for i in range {
                        let src = source(i), dst = m.grad + i * p, own = s + i * p
                        var plane: Float = 0
                        for j in 0..<p {
                            let diff = own[j] - src[j]
                            plane += diff * diff
                            dst[j] = g * diff
                        }
                        sum += Double(plane)
                    }
                    d[part] = sum
                }
            }
            total += error.reduce(0, +) / e
        }
        return Double(scale) * total
    }
}
