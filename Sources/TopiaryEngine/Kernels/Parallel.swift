import Dispatch

/// Splits independent loop iterations over the machine's cores (two here). Work items must not
/// write to the same memory; results are then identical to a sequential run.
enum Parallel {
    /// Wraps a non-Sendable closure for `concurrentPerform`; safe because callers only hand it
    /// loops whose iterations touch disjoint memory.
    private struct Body: @unchecked Sendable {
        let run: (Range<Int>) -> Void
    }

    static let workers = max(1, min(System.cores, 8))

    /// Runs `body` over 0..<count in contiguous chunks, in parallel when `count × cost` is large
    /// enough to pay for the threads.
    static func forEach(_ count: Int, cost: Int = 1, _ body: @escaping (Range<Int>) -> Void) {
        guard workers > 1, count > 1, count * cost >= 32_768 else {
            body(0..<count)
            return
        }
        let chunks = min(workers, count)
        let b = Body(run: body)
        DispatchQueue.concurrentPerform(iterations: chunks) { i in
            let lo = count * i / chunks, hi = count * (i + 1) / chunks
            if lo < hi { b.run(lo..<hi) }
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
