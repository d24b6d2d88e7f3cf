/// Element-wise loops written with 16-float vectors: Swift does not vectorise loops over
/// pointers it cannot prove apart, and these are the engine's inner loops. Each handles any
/// length (a scalar tail) and unaligned pointers.
enum Vec {
    typealias V = SIMD16<Float>

    @inline(__always) static func load(_ p: UnsafePointer<Float>) -> V { UnsafeRawPointer(p).loadUnaligned(as: V.self) }

    @inline(__always) static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) { UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self) }

    /// d[i] = s[i], inline (for the short rows of small images a `memmove` call cost more than
    /// the copy). d and s must not overlap.
    @inline(__always) static func copy(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { store(load(s + i), d + i); i += 16 }
        while i < n { d[i] = s[i]; i += 1 }
    }

    /// Σ x[i], sixteen partial sums.
    @inline(__always) static func total(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var i = 0
        var acc = V()
        while i + 16 <= n { acc += load(x + i); i += 16 }
        var t = acc.sum()
        while i < n { t += x[i]; i += 1 }
        return t
    }

    /// d[i] += s[i]
    @inline(__always) static func add(_ d: UnsafeMutablePointer<Float>, _ s: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { store(load(d + i) + load(s + i), d + i); i += 16 }
        while i < n { d[i] += s[i]; i += 1 }
    }

    /// y[i] = max(x[i], 0)
    @inline(__always) static func relu(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        let zero = V()
        while i + 16 <= n {
            let v = load(x + i)
            store(v.replacing(with: zero, where: v .< zero), y + i)  // (pointwiseMax compiles to a scalar loop)
            i += 16
        }
        while i < n { y[i] = max(x[i], 0); i += 1 }
    }

    /// dx[i] += x[i] > 0 ? dy[i] : 0
    @inline(__always) static func reluBackward(_ dx: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        let zero = V()
        while i + 16 <= n {
            let g = load(dy + i).replacing(with: zero, where: load(x + i) .<= zero)
            store(load(dx + i) + g, dx + i)
            i += 16
        }
        while i < n { dx[i] += x[i] > 0 ? dy[i] : 0; i += 1 }
    }

    /// y[i] = min(max(x[i], lo), hi) (NaN stays NaN)
    @inline(__always) static func clip(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ lo: Float, _ hi: Float, _ n: Int) {
        var i = 0
        let vlo = V(repeating: lo), vhi = V(repeating: hi)
        while i + 16 <= n {
            let v = load(x + i)
            store(v.replacing(with: vlo, where: v .< vlo).replacing(with: vhi, where: v .> vhi), y + i)
            i += 16
        }
        while i < n { y[i] = min(max(x[i], lo), hi); i += 1 }
    }

    /// dx[i] += lo < x[i] < hi ? dy[i] : 0
    @inline(__always) static func clipBackward(_ dx: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>,
                                               _ lo: Float, _ hi: Float, _ n: Int) {
        var i = 0
        let vlo = V(repeating: lo), vhi = V(repeating: hi), zero = V()
        while i + 16 <= n {
            let v = load(x + i)
            let g = load(dy + i).replacing(with: zero, where: (v .<= vlo) .| (v .>= vhi))
            store(load(dx + i) + g, dx + i)
            i += 16
        }
        while i < n { dx[i] += x[i] > lo && x[i] < hi ? dy[i] : 0; i += 1 }
    }

    /// y[i] = a[i] + b[i]
    @inline(__always) static func sum(_ y: UnsafeMutablePointer<Float>, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) {
        var i = 0
        while i + 16 <= n { store(load(a + i) + load(b + i), y + i); i += 16 }
        while i < n { y[i] = a[i] + b[i]; i += 1 }
    }

    /// y[i] = x[i] · a + b
    @inline(__always) static func affine(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ a: Float, _ b: Float, _ n: Int) {
        var i = 0
        let va = V(repeating: a), vb = V(repeating: b)
        while i + 16 <= n { store(load(x + i) * va + vb, y + i); i += 16 }
        while i < n { y[i] = x[i] * a + b; i += 1 }
    }
}
