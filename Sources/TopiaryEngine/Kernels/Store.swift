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

    deinit { for p in owned { UnsafeMutableRawPointer(p).deallocate() } }  // raw, as allocated (64-byte aligned)

    func count(_ id: Int) -> Int { shapes[id].reduce(1, *) }

    /// Adds a value of `shape`, zeroed, optionally with a gradient buffer.
    func add(shape: [Int], gradient: Bool) -> Int {
        let n = max(shape.reduce(1, *), 1)
        values.append(allocate(n))
        grads.append(gradient ? allocate(n) : nil)
        shapes.append(shape)
        return values.count - 1
    }

    /// A zeroed buffer of n floats on a 64-byte boundary (a cache line, one AVX-512 vector: whole
    /// vector loads and stores at the start of a buffer then touch one line, not two).
    func allocate(_ n: Int) -> UnsafeMutablePointer<Float> {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(n, 1) * MemoryLayout<Float>.stride, alignment: 64)
            .bindMemory(to: Float.self, capacity: max(n, 1))
        p.initialize(repeating: 0, count: max(n, 1))
        owned.append(p)
        return p
    }

    /// Counts `set` and `touch` calls: kernels that keep a transformed copy of weights that are
    /// not trained redo it when this has moved.
    private(set) var generation = 0

    /// Marks values as changed in place.
    func touch() { generation += 1 }

    func set(_ id: Int, _ data: [Float]) {
        generation += 1
        data.withUnsafeBufferPointer { values[id].update(from: $0.baseAddress!, count: min(data.count, count(id))) }
    }

    func get(_ id: Int) -> [Float] { Array(UnsafeBufferPointer(start: values[id], count: count(id))) }

    func zeroGrads() {
        for (i, g) in grads.enumerated() { if let g { g.update(repeating: 0, count: max(count(i), 1)) } }
    }
}

/// C = alpha · op(A) · op(B) + beta · C, row-major, through OpenBLAS. Big products are split into
/// column (or row) blocks, one per worker, each a single-threaded OpenBLAS call: one thread pool
/// for the whole engine (OpenBLAS's own would spin against the one the other kernels use), and
/// every element of C is computed by the same sequence of operations whatever the thread count.
func gemm(transA: Bool = false, transB: Bool = false, m: Int, n: Int, k: Int, alpha: Float = 1,
          a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    _ = blasSingleThreaded
    let parts = Parallel.workers
    guard parts > 1, !Parallel.inside, m * n * k >= 1 << 17, max(m, n) >= 32 else {
        sgemm(transA, transB, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
        return
    }
    if n >= m {
        // Column blocks, multiples of 16 wide.
        let step = ((n + parts - 1) / parts + 15) / 16 * 16
        Parallel.blocks(count: (n + step - 1) / step) { i in
            let lo = i * step, width = min(step, n - lo)
            sgemm(transA, transB, m, width, k, alpha, a, lda, transB ? b + lo * ldb : b + lo, ldb, beta, c + lo, ldc)
        }
    } else {
        let step = (m + parts - 1) / parts
        Parallel.blocks(count: (m + step - 1) / step) { i in
            let lo = i * step, rows = min(step, m - lo)
            sgemm(transA, transB, rows, n, k, alpha, transA ? a + lo : a + lo * lda, lda, b, ldb, beta, c + lo * ldc, ldc)
        }
    }
}

@inline(__always)
private func sgemm(_ transA: Bool, _ transB: Bool, _ m: Int, _ n: Int, _ k: Int, _ alpha: Float, _ a: UnsafePointer<Float>, _ lda: Int,
                   _ b: UnsafePointer<Float>, _ ldb: Int, _ beta: Float, _ c: UnsafeMutablePointer<Float>, _ ldc: Int) {
    cblas_sgemm(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
}

/// Sets how many threads the engine uses (its kernels and the products it hands OpenBLAS, which
/// itself runs single-threaded).
public func setComputeThreads(_ n: Int) {
    openblas_set_num_threads(1)
    Parallel.workers = max(1, min(n, 64))
}

/// OpenBLAS's own threads stay off even when `setComputeThreads` was never called.
private let blasSingleThreaded: Void = openblas_set_num_threads(1)
