/// Reads the value of a `Constant` node, whichever attribute holds it.
public enum ConstantValue {
    /// The tensor a `Constant` node produces, or nil when it holds a sparse value or nothing.
    public static func tensor(of node: Node) -> Tensor? {
        let name = node.outputs.first ?? ""
        for attr in node.attributes {
            switch (attr.name, attr.value) {
            case ("value", .tensor(var t)):
                t.name = name
                return t
            case ("value_float", .float(let f)):
                return Tensor(name: name, floats: [f], dims: [])
            case ("value_floats", .floats(let fs)):
                return Tensor(name: name, floats: fs, dims: [fs.count])
            case ("value_int", .int(let i)):
                return Tensor(name: name, int64s: [i], dims: [])
            case ("value_ints", .ints(let xs)):
                return Tensor(name: name, int64s: xs, dims: [xs.count])
            case ("value_string", .string(let s)):
                return Tensor(name: name, strings: [s], dims: [])
            case ("value_strings", .strings(let ss)):
                return Tensor(name: name, strings: ss, dims: [ss.count])
            default:
                continue
            }
        }
        return nil
    }
}
