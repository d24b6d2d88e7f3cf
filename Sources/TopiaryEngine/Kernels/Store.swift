import CBLAS
import Foundation

/// Float storage of a compiled program: one buffer per value and, for values that need one, a
/// gradient buffer of the same size. Allocated once at compile time; steps allocate nothing.
public final class Store {
    /// Values (activations, parameters, constants), by id.
    var values: [UnsafeMutablePointer<Float>] = []
    /// Gradients by value id; nil where none is needed.
    var grads: [UnsafeMutablePointer<Float>?] = []
    var shapes: [[Int]] = []
    private var owned: [UnsafeMutablePointer<Float>] = []

    deinit { for p in owned { p.deallocate() } }

    func count(_ id: Int) -> Int { shapes[id].reduce(1, *) }

    /// Adds a value of `shape`, zeroed, optionally with a gradient buffer.
    func add(shape: [Int], gradient: Bool) -> Int {
        let n = max(shape.reduce(1, *), 1)
        values.append(allocate(n))
        grads.append(gradient ? allocate(n) : nil)
        shapes.append(shape)
        return values.count - 1
    }

    func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        owned.append(p)
        return p
    }

    func set(_ id: Int, _ data: [Float]) {
        data.withUnsafeBufferPointer { values[id].update(from: $0.baseAddress!, count: min(data.count, count(id))) }
    }

    func get(_ id: Int) -> [Float] { Array(UnsafeBufferPointer(start: values[id], count: count(id))) }

    func zeroGrads() {
        for (i, g) in grads.enumerated() { if let g { g.update(repeating: 0, count: max(count(i), 1)) } }
    }
}

/// C = alpha · op(A) · op(B) + beta · C, row-major, through OpenBLAS.
@inline(__always)
func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
}

/// Sets how many threads OpenBLAS uses.
public func setComputeThreads(_ n: Int) {
    openblas_set_num_threads(Int32(n))
}
