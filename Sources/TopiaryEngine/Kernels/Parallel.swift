import Dispatch

/// Splits independent loop iterations over the machine's cores (two here). Work items must not
/// write to the same memory; results are then identical to a sequential run.
enum Parallel {
    /// Wraps a non-Sendable closure for `concurrentPerform`; safe because callers only hand it
    /// loops whose iterations touch disjoint memory.
    private struct Body: @unchecked Sendable {
        let run: (Range<Int>) -> Void
    }

    /// Threads to use; `setComputeThreads` sets it (default: every core, at most 8).
    nonisolated(unsafe) static var workers = max(1, min(System.cores, 8))

    /// True on a worker thread of `forEach` or `blocks`: nested loops then run sequentially.
    @TaskLocal static var inside = false

    /// Runs `body` over 0..<count in contiguous chunks, in parallel when `count × cost` is large
    /// enough to pay for the threads.
    static func forEach(_ count: Int, cost: Int = 1, _ body: @escaping (Range<Int>) -> Void) {
        guard workers > 1, count > 1, count * cost >= 32_768, !inside else {
            body(0..<count)
            return
        }
        let chunks = min(workers, count)
        let b = Body(run: body)
        DispatchQueue.concurrentPerform(iterations: chunks) { i in
            let lo = count * i / chunks, hi = count * (i + 1) / chunks
            if lo < hi { $inside.withValue(true) { b.run(lo..<hi) } }
        }
    }

    /// Runs `body(i)` for every i in 0..<count, one block per iteration, in parallel.
    static func blocks(count: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let b = Body(run: { range in for i in range { body(i) } })
            DispatchQueue.concurrentPerform(iterations: count) { i in $inside.withValue(true) { b.run(i..<(i + 1)) } }
        }
    }
}

enum System {
    static let cores: Int = {
        #if canImport(Glibc)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        return 1
        #endif
    }()
}

#if canImport(Glibc)
import Glibc
#endif
