import Dispatch
import Foundation

/// `body` applied to every element of `items` across the cores, results in the order of `items`.
/// Items are handed out one at a time, so put the biggest first when their costs differ. Each
/// call of `body` must touch only its own item's memory. The first error thrown is rethrown.
public func parallelMap<T, R>(_ items: [T], _ body: (T) throws -> R) throws -> [R] {
    if items.count < 2 { return try items.map(body) }
    let slots = UnsafeMutableBufferPointer<Result<R, Error>?>.allocate(capacity: items.count)
    slots.initialize(repeating: nil)
    defer {
        slots.deinitialize()
        slots.deallocate()
    }
    withoutActuallyEscaping(body) { body in
        nonisolated(unsafe) let body = body, out = slots, items = items
        DispatchQueue.concurrentPerform(iterations: items.count) { i in
            out[i] = Result { try body(items[i]) }
        }
    }
    return try slots.map { try $0!.get() }
}

/// Jobs a background thread starts on at once while the caller does other work; `finish` then
/// runs what is left on the calling thread as well and waits for the rest. For memory-bound work
/// (moving weights) that other, unrelated work can overlap.
public final class BackgroundJobs: @unchecked Sendable {
    private let jobs: [@Sendable () -> Void]
    private let lock = NSLock()
    private var next = 0
    private let group = DispatchGroup()
    private var finished = false

    public init(_ jobs: [@Sendable () -> Void]) {
        self.jobs = jobs
        if jobs.isEmpty { return }
        group.enter()
        DispatchQueue.global(qos: .userInitiated).async {
            self.drain()
            self.group.leave()
        }
    }

    private func claim() -> Int? {
        lock.lock()
        defer { lock.unlock() }
        guard next < jobs.count else { return nil }
        next += 1
        return next - 1
    }

    private func drain() {
        while let i = claim() { jobs[i]() }
    }

    /// Runs the jobs not yet started, waits for those running, and returns when all are done.
    /// Further calls return at once.
    public func finish() {
        if finished { return }
        drain()
        group.wait()
        finished = true
    }
}
