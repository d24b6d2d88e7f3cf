import Foundation
import TopiaryIR

/// Element-wise activations: y = f(x), dx += f'(x) · dy. The commonest ones run as tight loops
/// the compiler vectorises; the rest call a closure per element.
final class UnaryKernel: Kernel {
    enum Fast { case relu, clip(Float, Float), hardSwish, identity, none }
    let x: Int, y: Int
    let f: (Float) -> Float
    /// Derivative from the input (and output) value.
    let df: (Float, Float) -> Float
    var fast: Fast = .none

    init(x: Int, y: Int, f: @escaping (Float) -> Float, df: @escaping (Float, Float) -> Float) {
        (self.x, self.y, self.f, self.df) = (x, y, f, df)
    }

    func forward(_ s: Store, training: Bool) {
        let a = s.values[x], b = s.values[y]
        let fast = fast, f = f
        Parallel.forEach(s.count(y)) { r in
            switch fast {
            case .relu: Vec.relu(b + r.lowerBound, a + r.lowerBound, r.count)
            case .clip(let lo, let hi): Vec.clip(b + r.lowerBound, a + r.lowerBound, lo, hi, r.count)
            case .hardSwish: for i in r { let v = a[i]; b[i] = v * min(max(v + 3, 0), 6) * (1 / 6) }
            case .identity: (b + r.lowerBound).update(from: a + r.lowerBound, count: r.count)
            case .none: for i in r { b[i] = f(a[i]) }
            }
        }
    }

    func backward(_ s: Store) {
        guard let gx = s.grads[x], let gy = s.grads[y] else { return }
        let a = s.values[x], b = s.values[y]
        let fast = fast, df = df
        Parallel.forEach(s.count(y)) { r in
            switch fast {
            case .relu: Vec.reluBackward(gx + r.lowerBound, a + r.lowerBound, gy + r.lowerBound, r.count)
            case .clip(let lo, let hi): Vec.clipBackward(gx + r.lowerBound, a + r.lowerBound, gy + r.lowerBound, lo, hi, r.count)
            case .identity: Vec.add(gx + r.lowerBound, gy + r.lowerBound, r.count)
            default: for i in r { gx[i] += df(a[i], b[i]) * gy[i] }
            }
        }
    }

    static func make(_ c: KernelContext) throws -> Kernel {
        let (x, y) = (c.inputs[0], c.outputs[0])
        switch c.node.opType {
        case "Relu": return UnaryKernel(x: x, y: y, f: { max($0, 0) }, df: { a, _ in a > 0 ? 1 : 0 }).with(.relu)
        case "LeakyRelu":
            let alpha = c.node.float("alpha", default: 0.01)
            return UnaryKernel(x: x, y: y, f: { $0 > 0 ? $0 : alpha * $0 }, df: { a, _ in a > 0 ? 1 : alpha })
        case "Clip":
            let lo = try c.scalar(1, attribute: "min", default: -.greatestFiniteMagnitude)
            let hi = try c.scalar(2, attribute: "max", default: .greatestFiniteMagnitude)
            return UnaryKernel(x: x, y: y, f: { min(max($0, lo), hi) }, df: { a, _ in a > lo && a < hi ? 1 : 0 }).with(.clip(lo, hi))
        case "Sigmoid": return UnaryKernel(x: x, y: y, f: { 1 / (1 + exp(-$0)) }, df: { _, b in b * (1 - b) })
        case "Tanh": return UnaryKernel(x: x, y: y, f: { tanh($0) }, df: { _, b in 1 - b * b })
        case "HardSigmoid":
            let alpha = c.node.float("alpha", default: 0.2), beta = c.node.float("beta", default: 0.5)
            return UnaryKernel(x: x, y: y, f: { min(max(alpha * $0 + beta, 0), 1) }, df: { a, _ in
                let v = alpha * a + beta
                return v > 0 && v < 1 ? alpha : 0
            })
        case "HardSwish":
            return UnaryKernel(x: x, y: y, f: { $0 * min(max($0 + 3, 0), 6) / 6 }, df: { a, _ in a < -3 ? 0 : a > 3 ? 1 : (2 * a + 3) / 6 }).with(.hardSwish)
        case "Identity", "Dropout":
            return UnaryKernel(x: x, y: y, f: { $0 }, df: { _, _ in 1 }).with(.identity)
        case "Neg": return UnaryKernel(x: x, y: y, f: { -$0 }, df: { _, _ in -1 })
        case "Exp": return UnaryKernel(x: x, y: y, f: { exp($0) }, df: { _, b in b })
        case "Sqrt": return UnaryKernel(x: x, y: y, f: { $0.squareRoot() }, df: { _, b in 0.5 / b })
        case "Abs": return UnaryKernel(x: x, y: y, f: { abs($0) }, df: { a, _ in a >= 0 ? 1 : -1 })
        default: throw EngineError.unsupported("no kernel for \(c.node.opType)")
        }
    }
}

extension UnaryKernel {
    func with(_ f: Fast) -> UnaryKernel {
        fast = f
        return self
    }
}

/// How an input of a broadcasting op maps onto the output: nil when shapes are equal, else the
/// input offset of every output element.
func broadcastMap(input: [Int], output: [Int]) throws -> [Int32]? {
    if input == output { return nil }
    let rank = output.count
    guard input.count <= rank else { throw EngineError.shape("cannot broadcast \(input) to \(output)") }
    let padded = Array(repeating: 1, count: rank - input.count) + input
    var strides = [Int](repeating: 0, count: rank)
    var acc = 1
    for a in stride(from: rank - 1, through: 0, by: -1) {
        guard padded[a] == output[a] || padded[a] == 1 else { throw EngineError.shape("cannot broadcast \(input) to \(output)") }
        strides[a] = padded[a] == 1 ? 0 : acc
        acc *= padded[a]
    }
    let n = output.reduce(1, *)
    var map = [Int32](repeating: 0, count: n)
    var index = [Int](repeating: 0, count: rank)
    var off = 0
    for i in 0..<n {
        map[i] = Int32(off)
        var a = rank - 1
        while a >= 0 {
            index[a] += 1
            off += strides[a]
            if index[a] < output[a] { break }
            off -= strides[a] * output[a]
            index[a] = 0
            a -= 1
        }
    }
    return map
}

/// Add, Sub, Mul, Div and PRelu with numpy broadcasting.
final class BinaryKernel: Kernel {
    enum Op: Equatable { case add, sub, mul, div, prelu }
    let op: Op
    let a: Int, b: Int, y: Int
    let mapA: [Int32]?, mapB: [Int32]?

    init(_ c: KernelContext, op: Op) throws {
        self.op = op
        (a, b, y) = (c.inputs[0], c.inputs[1], c.outputs[0])
        let out = c.shape(out: 0)
        mapA = try broadcastMap(input: c.shape(in: 0), output: out)
        mapB = try broadcastMap(input: c.shape(in: 1), output: out)
    }

    func forward(_ s: Store, training: Bool) {
        let n = s.count(y), pa = s.values[a], pb = s.values[b], py = s.values[y]
        if mapA == nil && mapB == nil {
            let op = op
            Parallel.forEach(n) { r in
                switch op {
                case .add: Vec.sum(py + r.lowerBound, pa + r.lowerBound, pb + r.lowerBound, r.count)
                case .sub: for i in r { py[i] = pa[i] - pb[i] }
                case .mul: for i in r { py[i] = pa[i] * pb[i] }
                case .div: for i in r { py[i] = pa[i] / pb[i] }
                case .prelu: for i in r { let v = pa[i]; py[i] = v > 0 ? v : v * pb[i] }
                }
            }
            return
        }
        if mapA == nil, let mb = mapB {
            mb.withUnsafeBufferPointer { m in
                switch op {
                case .add: for i in 0..<n { py[i] = pa[i] + pb[Int(m[i])] }
                case .sub: for i in 0..<n { py[i] = pa[i] - pb[Int(m[i])] }
                case .mul: for i in 0..<n { py[i] = pa[i] * pb[Int(m[i])] }
                case .div: for i in 0..<n { py[i] = pa[i] / pb[Int(m[i])] }
                case .prelu: for i in 0..<n { let v = pa[i]; py[i] = v > 0 ? v : v * pb[Int(m[i])] }
                }
            }
            return
        }
        for i in 0..<n {
            let u = pa[mapA.map { Int($0[i]) } ?? i], v = pb[mapB.map { Int($0[i]) } ?? i]
            switch op {
            case .add: py[i] = u + v
            case .sub: py[i] = u - v
            case .mul: py[i] = u * v
            case .div: py[i] = u / v
            case .prelu: py[i] = u > 0 ? u : u * v
            }
        }
    }

    func backward(_ s: Store) {
        guard let gy = s.grads[y] else { return }
        let n = s.count(y), pa = s.values[a], pb = s.values[b]
        let ga = s.grads[a], gb = s.grads[b]
        if mapA == nil && mapB == nil && (op == .add || op == .mul) {
            let mul = op == .mul
            Parallel.forEach(n) { r in
                if mul {
                    if let ga { for i in r { ga[i] += gy[i] * pb[i] } }
                    if let gb { for i in r { gb[i] += gy[i] * pa[i] } }
                } else {
                    if let ga { Vec.add(ga + r.lowerBound, gy + r.lowerBound, r.count) }
                    if let gb { Vec.add(gb + r.lowerBound, gy + r.lowerBound, r.count) }
                }
            }
            return
        }
        for i in 0..<n {
            let ia = mapA.map { Int($0[i]) } ?? i, ib = mapB.map { Int($0[i]) } ?? i
            let g = gy[i]
            switch op {
            case .add:
                ga?[ia] += g
                gb?[ib] += g
            case .sub:
                ga?[ia] += g
                gb?[ib] -= g
            case .mul:
                ga?[ia] += g * pb[ib]
                gb?[ib] += g * pa[ia]
            case .div:
                let v = pb[ib]
                ga?[ia] += g / v
                gb?[ib] -= g * pa[ia] / (v * v)
            case .prelu:
                let u = pa[ia]
                ga?[ia] += u > 0 ? g : g * pb[ib]
                if u <= 0 { gb?[ib] += g * u }
            }
        }
    }
}

/// y = x (Reshape, Flatten, Squeeze, Unsqueeze: same elements, new shape).
final class CopyKernel: Kernel {
    let x: Int, y: Int
    init(x: Int, y: Int) { (self.x, self.y) = (x, y) }

    func forward(_ s: Store, training: Bool) { s.values[y].update(from: s.values[x], count: s.count(y)) }

    func backward(_ s: Store) {
        guard let gx = s.grads[x], let gy = s.grads[y] else { return }
        for i in 0..<s.count(y) { gx[i] += gy[i] }
    }
}

/// Dropout in training: zero each element with probability `ratio`, scale the rest.
final class DropoutKernel: Kernel {
    let x: Int, y: Int, ratio: Float
    var mask: [Float]
    var rng: SplitMix

    init(x: Int, y: Int, ratio: Float, count: Int, seed: UInt64) {
        (self.x, self.y, self.ratio) = (x, y, ratio)
        mask = Array(repeating: 1, count: count)
        rng = SplitMix(seed: seed)
    }

    func forward(_ s: Store, training: Bool) {
        let n = s.count(y), px = s.values[x], py = s.values[y]
        let keep = 1 - ratio
        for i in 0..<n {
            mask[i] = training ? (Float(rng.nextUnit()) < keep ? 1 / keep : 0) : 1
            py[i] = px[i] * mask[i]
        }
    }

    func backward(_ s: Store) {
        guard let gx = s.grads[x], let gy = s.grads[y] else { return }
        for i in 0..<s.count(y) { gx[i] += gy[i] * mask[i] }
    }
}

