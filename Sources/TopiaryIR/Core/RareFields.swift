/// Fields of a node or tensor that graph walks never read (documentation, metadata, fields
/// outside the schema), kept behind one reference: copying a `Node` then retains one object, or
/// none when every such field is empty, instead of one per field. Copy on write keeps value
/// semantics.
struct RareFields<Value: RareDefaults>: @unchecked Sendable {
    private final class Box {
        var value: Value
        init(_ value: Value) { self.value = value }
    }

    private var box: Box?

    init() {}

    /// A field; its empty value while none was ever set.
    subscript<T>(_ field: KeyPath<Value, T>) -> T { (box?.value ?? Value())[keyPath: field] }

    /// Sets a field; setting an empty value while none was ever set allocates nothing. Copies
    /// the fields first when another value shares them.
    mutating func set<T>(_ field: WritableKeyPath<Value, T>, _ value: T, empty: Bool) {
        if box == nil {
            if empty { return }
            box = Box(Value())
        } else if !isKnownUniquelyReferenced(&box!) {
            box = Box(box!.value)
        }
        box!.value[keyPath: field] = value
    }
}

/// The all-empty value of a group of rare fields.
protocol RareDefaults: Sendable {
    init()
}
