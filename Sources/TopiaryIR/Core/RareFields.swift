/// Fields of a node or tensor that graph walks never read (documentation, metadata, fields
/// outside the schema), kept behind one reference: copying a `Node` then retains one object, or
/// none when every such field is empty, instead of one per field. Copy on write keeps value
/// semantics.
struct RareFields<Value: Sendable>: @unchecked Sendable {
    private final class Box {
        var value: Value
        init(_ value: Value) { self.value = value }
    }

    private var box: Box?

    init() {}

    /// True once a field was set.
    var isSet: Bool { box != nil }

    /// The fields, or `empty` when none was ever set.
    func get(or empty: @autoclosure () -> Value) -> Value { box?.value ?? empty() }

    /// Changes the fields, starting from `empty` when none was set; copies them first when
    /// another value shares them.
    mutating func update(empty: @autoclosure () -> Value, _ body: (inout Value) -> Void) {
        if box == nil {
            box = Box(empty())
        } else if !isKnownUniquelyReferenced(&box!) {
            box = Box(box!.value)
        }
        body(&box!.value)
    }
}
