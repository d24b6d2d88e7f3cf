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
