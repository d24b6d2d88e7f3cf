import Foundation
import TopiaryIR

/// Checkpoint file: a magic line, the JSON header length (8 bytes, little-endian), a JSON header
/// (epoch, RNG and optimizer step, tensor names and sizes, epoch reports), then the float32
/// tensors in header order: weights, running statistics, optimizer buffers. Written atomically.
struct CheckpointHeader: Codable {
    var version = 1
    var completedEpochs: Int
    var rng: UInt64
    var optimizerStep: Int
    var tensors: [Entry]
    var reports: [EpochReport]

    struct Entry: Codable {
        var name: String
        var count: Int
    }
}

extension Trainer {
    static let magic = Array("TOPIARY-CHECKPOINT\n".utf8)

    func save(to path: String) throws {
        var entries: [CheckpointHeader.Entry] = []
        var blobs: [[Float]] = []
        for (name, values) in program.weights().sorted(by: { $0.key < $1.key }) {
            entries.append(.init(name: name, count: values.count))
            blobs.append(values)
        }
        for (i, buffer) in optimizer.first.enumerated() {
            entries.append(.init(name: "optimizer.first.\(i)", count: buffer.count))
            blobs.append(buffer)
        }
        for (i, buffer) in optimizer.second.enumerated() {
            entries.append(.init(name: "optimizer.second.\(i)", count: buffer.count))
            blobs.append(buffer)
        }
        let header = CheckpointHeader(completedEpochs: completedEpochs, rng: rng.state, optimizerStep: optimizer.step, tensors: entries, reports: reports)
        let json = try JSONEncoder().encode(header)
        var data = Data(Trainer.magic)
        var length = UInt64(json.count).littleEndian
        data.append(Data(bytes: &length, count: 8))
        data.append(json)
        for b in blobs { b.withUnsafeBytes { data.append(contentsOf: $0) } }
        let url = URL(fileURLWithPath: path)
        do { try data.write(to: url, options: .atomic) } catch { throw EngineError.data("\(path): cannot write the checkpoint: \(error.localizedDescription)") }
    }

    func restore(from path: String) throws {
        guard let data = FileManager.default.contents(atPath: path), data.count > Trainer.magic.count + 8,
              Array(data.prefix(Trainer.magic.count)) == Trainer.magic else {
            throw EngineError.data("\(path): not a Topiary checkpoint")
        }
        let bytes = [UInt8](data)
        var length: UInt64 = 0
        withUnsafeMutableBytes(of: &length) { $0.copyBytes(from: bytes[Trainer.magic.count..<(Trainer.magic.count + 8)]) }
        let start = Trainer.magic.count + 8
        guard start + Int(length) <= bytes.count else { throw EngineError.data("\(path): truncated checkpoint header") }
        let header = try JSONDecoder().decode(CheckpointHeader.self, from: Data(bytes[start..<(start + Int(length))]))
        var offset = start + Int(length)
        var weights: [String: [Float]] = [:]
        var first: [Int: [Float]] = [:], second: [Int: [Float]] = [:]
        for e in header.tensors {
            guard offset + e.count * 4 <= bytes.count else { throw EngineError.data("\(path): truncated checkpoint data at '\(e.name)'") }
            let values = bytes[offset..<(offset + e.count * 4)].withUnsafeBytes { raw in (0..<e.count).map { raw.loadUnaligned(fromByteOffset: $0 * 4, as: Float.self) } }
            offset += e.count * 4
            if e.name.hasPrefix("optimizer.first."), let i = Int(e.name.dropFirst("optimizer.first.".count)) { first[i] = values }
            else if e.name.hasPrefix("optimizer.second."), let i = Int(e.name.dropFirst("optimizer.second.".count)) { second[i] = values }
            else { weights[e.name] = values }
        }
        let expected = Set(program.weights().keys)
        guard expected.isSubset(of: Set(weights.keys)) else { throw EngineError.data("\(path): the checkpoint belongs to another model") }
        program.load(weights: weights)
        for i in optimizer.first.indices { if let v = first[i], v.count == optimizer.first[i].count { optimizer.first[i] = v } }
        for i in optimizer.second.indices { if let v = second[i], v.count == optimizer.second[i].count { optimizer.second[i] = v } }
        optimizer.step = header.optimizerStep
        rng = SplitMix(seed: 0)
        rng.state = header.rng
        completedEpochs = header.completedEpochs
        reports = header.reports
    }
}
