import CPool
import Dispatch

/// Splits independent loop iterations over the machine's cores (two here). Work items must not
/// write to the same memory; results are then identical to a sequential run.
enum Parallel {
    /// A loop body for the C pool, reached through an unretained pointer while the call runs.
    private final class Job {
        let run: (Int) -> Void
        init(_ run: @escaping (Int) -> Void) { self.run = run }
    }

    /// Threads to use; `setComputeThreads` sets it (default: every core, at most 8).
    nonisolated(unsafe) static var workers = max(1, min(System.cores, 8))

    /// True while running an item of a parallel loop: nested loops then run sequentially.
    @TaskLocal static var inside = false

    /// Runs `body(i)` for i in 0..<count on the engine's thread pool (`topiary_pool_run`).
    private static func run(_ count: Int, _ body: @escaping (Int) -> Void) {
        let job = Job(body)
        withExtendedLifetime(job) {
            topiary_pool_run(count, Int32(workers), { context, i in
                let job = Unmanaged<Job>.fromOpaque(context!).takeUnretainedValue()
                Parallel.$inside.withValue(true) { job.run(i) }
            }, Unmanaged.passUnretained(job).toOpaque())
        }
    }

    /// Runs `body` over 0..<count in contiguous chunks, in parallel when `count × cost` is large
    /// enough to pay for the threads.
    static func forEach(_ count: Int, cost: Int = 1, _ body: @escaping (Range<Int>) -> Void) {
        guard workers > 1, count > 1, count * cost >= 32_768, !inside else {
            body(0..<count)
            return
        }
        let chunks = min(workers, count)
        run(chunks) { i in
            let lo = count * i / chunks, hi = count * (i + 1) / chunks
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Runs `body(i)` for every i in 0..<count, one block per iteration, in parallel.
    static func blocks(count: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in run(count, body) }
    }

    /// Splits 0..<count into `parts` fixed contiguous ranges, run in parallel as
    /// `body(part, range)`: the same partition whatever the scheduling, for per-part scratch and
    /// partial sums added up in part order.
    static func blocks(of count: Int, parts: Int, _ body: (_ part: Int, _ range: Range<Int>) -> Void) {
        blocks(count: parts) { b in body(b, (count * b / parts)..<(count * (b + 1) / parts)) }
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
