import Foundation

/// Ops that move elements: each output element is one input element (or a pad value), found
/// through an index map computed once at compile time. Concat, Split, Slice, Transpose, Pad.
final class GatherKernel: Kernel {
    /// For each output: (input slot, element offset), offset -1 meaning the pad value.
    let sources: [Int]
    let outputs: [Int]
    let maps: [[(slot: Int32, offset: Int32)]]
    let padValue: Float

    init(sources: [Int], outputs: [Int], maps: [[(slot: Int32, offset: Int32)]], padValue: Float = 0) {
        (self.sources, self.outputs, self.maps, self.padValue) = (sources, outputs, maps, padValue)
    }

    func forward(_ s: Store, training: Bool) {
        for (k, out) in outputs.enumerated() {
            let dst = s.values[out]
            for (i, e) in maps[k].enumerated() { dst[i] = e.offset < 0 ? padValue : s.values[sources[Int(e.slot)]][Int(e.offset)] }
        }
    }

    func backward(_ s: Store) {
        for (k, out) in outputs.enumerated() {
            guard let g = s.grads[out] else { continue }
            for (i, e) in maps[k].enumerated() where e.offset >= 0 {
                s.grads[sources[Int(e.slot)]]?[Int(e.offset)] += g[i]
            }
        }
    }
}

/// Row-major strides of a shape.
func strides(_ shape: [Int]) -> [Int] {
    var s = [Int](repeating: 1, count: shape.count)
    for a in stride(from: shape.count - 2, through: 0, by: -1) { s[a] = s[a + 1] * shape[a + 1] }
    return s
}

/// Calls `body` with the multi-index of every element of `shape`, in row-major order.
func forEachIndex(_ shape: [Int], _ body: ([Int]) -> Void) {
    let n = shape.reduce(1, *)
    guard n > 0 else { return }
    var index = [Int](repeating: 0, count: shape.count)
    for _ in 0..<n {
        body(index)
        var a = shape.count - 1
        while a >= 0 {
            index[a] += 1
            if index[a] < shape[a] { break }
            index[a] = 0
            a -= 1
        }
    }
}

enum LayoutMaps {
    static func concat(inputs: [[Int]], axis: Int) -> [(slot: Int32, offset: Int32)] {
        var out: [(Int32, Int32)] = []
        let outer = inputs[0][..<axis].reduce(1, *)
        for o in 0..<outer {
            for (slot, shape) in inputs.enumerated() {
                let block = shape[axis...].reduce(1, *)
                for i in 0..<block { out.append((Int32(slot), Int32(o * block + i))) }
            }
        }
        return out
    }

    static func split(input: [Int], axis: Int, sizes: [Int]) -> [[(slot: Int32, offset: Int32)]] {
        let outer = input[..<axis].reduce(1, *), inner = input[(axis + 1)...].reduce(1, *)
        var start = 0
        return sizes.map { size in
            defer { start += size }
            var m: [(Int32, Int32)] = []
            for o in 0..<outer { for j in 0..<(size * inner) { m.append((0, Int32((o * input[axis] + start) * inner + j))) } }
            return m
        }
    }

    /// Output element -> input offset for Slice with per-axis (start, step, count).
    static func slice(input: [Int], output: [Int], starts: [Int], steps: [Int]) -> [(slot: Int32, offset: Int32)] {
        let st = strides(input)
        var m: [(Int32, Int32)] = []
        forEachIndex(output) { idx in
            var off = 0
            for a in 0..<idx.count { off += (starts[a] + idx[a] * steps[a]) * st[a] }
            m.append((0, Int32(off)))
        }
        return m
    }

    static func transpose(input: [Int], perm: [Int]) -> [(slot: Int32, offset: Int32)] {
        let st = strides(input)
        let outShape = perm.map { input[$0] }
        var m: [(Int32, Int32)] = []
        forEachIndex(outShape) { idx in
            var off = 0
            for (k, a) in perm.enumerated() { off += idx[k] * st[a] }
            m.append((0, Int32(off)))
        }
        return m
    }

    static func pad(input: [Int], output: [Int], begins: [Int]) -> [(slot: Int32, offset: Int32)] {
        let st = strides(input)
        var m: [(Int32, Int32)] = []
        forEachIndex(output) { idx in
            var off = 0
            var inside = true
            for a in 0..<idx.count {
                let i = idx[a] - begins[a]
                if i < 0 || i >= input[a] { inside = false; break }
                off += i * st[a]
            }
            m.append((0, inside ? Int32(off) : -1))
        }
        return m
    }
}
