import Foundation
import Testing
import TopiaryIR

@Suite struct ParallelMapTests {
    @Test func parallelMapKeepsOrderAndRethrows() throws {
        let items = Array(0..<500)
        #expect(try parallelMap(items) { $0 * $0 } == items.map { $0 * $0 })
        struct Boom: Error {}
        #expect(throws: Boom.self) { _ = try parallelMap(items) { i in if i == 321 { throw Boom() }; return i } }
    }

    /// Every background job runs exactly once, and `finish` returns only after the last one
    /// (jobs long enough that the background thread is still busy when `finish` is called).
    @Test func backgroundJobsAllRunBeforeFinishReturns() {
        final class Counts: @unchecked Sendable {
            let lock = NSLock()
            var runs = [Int](repeating: 0, count: 64)
            func hit(_ i: Int) { lock.lock(); runs[i] += 1; lock.unlock() }
        }
        let counts = Counts()
        let jobs: [@Sendable () -> Void] = (0..<64).map { i in { usleep(500); counts.hit(i) } }
        let background = BackgroundJobs(jobs)
        background.finish()
        counts.lock.lock()
        #expect(counts.runs == [Int](repeating: 1, count: 64))
        counts.lock.unlock()
        background.finish()  // a second call returns at once and runs nothing again
        #expect(counts.runs == [Int](repeating: 1, count: 64))
    }
}
