import Dispatch
import Testing
@testable import TopiaryEngine

/// The engine's thread pool: every index runs exactly once, whoever calls and however often,
/// including from several threads at once and from inside a running loop.
@Suite struct ParallelTests {
    /// Counts how often each index ran (atomically enough: one lock).
    final class Tally: @unchecked Sendable {
        private var counts: [Int]
        private let lock = NSLockish()
        init(_ n: Int) { counts = Array(repeating: 0, count: n) }
        func hit(_ i: Int) { lock.with { counts[i] += 1 } }
        var all: [Int] { lock.with { counts } }
    }

    final class NSLockish: @unchecked Sendable {
        private var m = pthread_mutex_t()
        init() { pthread_mutex_init(&m, nil) }
        func with<T>(_ body: () -> T) -> T { pthread_mutex_lock(&m); defer { pthread_mutex_unlock(&m) }; return body() }
    }

    @Test func everyIndexRunsOnce() {
        Parallel.workers = 2
        for count in [2, 3, 17, 1000, 65_537] {
            let tally = Tally(count)
            Parallel.forEach(count, cost: 1 << 15) { range in for i in range { tally.hit(i) } }
            #expect(tally.all == Array(repeating: 1, count: count), "count \(count)")
        }
        for _ in 0..<2000 {
            let tally = Tally(5)
            Parallel.blocks(count: 5) { tally.hit($0) }
            #expect(tally.all == [1, 1, 1, 1, 1])
        }
    }

    @Test func concurrentAndNestedCallersAllFinish() {
        Parallel.workers = 2
        let outer = Tally(8 * 64)
        DispatchQueue.concurrentPerform(iterations: 8) { t in
            for round in 0..<64 {
                let inner = Tally(100)
                Parallel.forEach(100, cost: 1 << 15) { range in
                    for i in range {
                        // A loop started from inside a running one runs on its caller's thread.
                        Parallel.blocks(count: 2) { _ in }
                        inner.hit(i)
                    }
                }
                if inner.all == Array(repeating: 1, count: 100) { outer.hit(t * 64 + round) }
            }
        }
        #expect(outer.all == Array(repeating: 1, count: 8 * 64))
    }
}

#if canImport(Glibc)
import Glibc
#endif
