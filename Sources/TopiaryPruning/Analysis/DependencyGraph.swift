import TopiaryIR

/// Why a channel may not be removed.
struct Barrier: Error {
    let reason: String
    init(_ reason: String) { self.reason = reason }
}

/// Disjoint sets of atoms (union by smaller index, path halving). A value type, so that a whole
/// tie is one access to the owning graph rather than one per atom.
struct UnionFind {
    private var parent: [Int] = []

    mutating func add(_ count: Int) {
        let first = parent.count
        parent.append(contentsOf: first..<(first + count))
    }

    mutating func find(_ a: Int) -> Int {
        var a = a
        while parent[a] != a {
            parent[a] = parent[parent[a]]
            a = parent[a]
        }
        return a
    }

    mutating func union(_ a: Int, _ b: Int) {
        let ra = find(a), rb = find(b)
        if ra != rb { parent[max(ra, rb)] = min(ra, rb) }
    }

    mutating func tie(_ a: [Int], _ b: [Int]) {
        for (x, y) in zip(a, b) { union(x, y) }
    }

    mutating func roots() -> [Int] { parent.indices.map { find($0) } }
}

/// The channels of a model and the ties between them, built in one pass over the graph.
///
/// Every producer of channels (a Conv, a Gemm, a graph input) makes a *space* of atoms, one per
/// channel. Rules per op propagate layouts forward and tie atoms that must be removed together
/// (union-find): the two inputs of a residual Add, a depthwise conv's input and output, the gate and
/// the features of squeeze-excite, the columns of a channel shuffle. Equivalence classes of atoms
/// are the units of pruning; spaces that share a class form a dependency group.
final class DependencyGraph {
    struct Space {
        let name: String
        let node: String
        let opType: String
        let firstAtom: Int
        let size: Int
    }

    let model: Model
    let shapes: ShapeTable
    private(set) var constants: [String: Tensor]
    private(set) var spaces: [Space] = []
    private(set) var atomSpace: [Int] = []
    private var sets = UnionFind()
    /// Why each atom may not be removed (nil when it may).
    private(set) var pins: [String?] = []
    var layouts: [String: ChannelLayout] = [:]
    private(set) var members: [Member] = []
    private struct MemberKey: Hashable {
        let tensor: String
        let axis: Int
    }
    private var memberIndex: [MemberKey: [Int]] = [:]
    private(set) var updates: [ParameterUpdate] = []
    /// Nodes that stopped the analysis, with the reason (for reports).
    private(set) var barriers: [(node: String, op: String, reason: String)] = []

    init(model: Model, shapes: ShapeTable? = nil) throws {
        self.model = model
        self.shapes = try shapes ?? ShapeInference.run(model)
        self.constants = model.graph.constants()
        try build()
    }

    // MARK: atoms

    /// A new space of `size` channels; `pinned` marks them never prunable.
    func newSpace(name: String, node: String, opType: String, size: Int, pinned: String? = nil) -> [Int] {
        let first = atomSpace.count
        spaces.append(Space(name: name, node: node, opType: opType, firstAtom: first, size: size))
        atomSpace.append(contentsOf: repeatElement(spaces.count - 1, count: size))
        pins.append(contentsOf: repeatElement(nil, count: size))
        sets.add(size)
        let atoms = Array(first..<(first + size))
        if let pinned { pin(atoms, pinned) }
        return atoms
    }

    func find(_ a: Int) -> Int { sets.find(a) }

    func union(_ a: Int, _ b: Int) { sets.union(a, b) }

    /// Ties two equally long atom lists position by position.
    func tie(_ a: [Int], _ b: [Int]) throws {
        guard a.count == b.count else { throw Barrier("channel counts differ (\(a.count) vs \(b.count))") }
        sets.tie(a, b)
    }

    /// Class representative of every atom.
    func roots() -> [Int] { sets.roots() }

    func pin(_ atoms: [Int], _ reason: String) {
        for a in atoms where pins[a] == nil { pins[a] = reason }
    }

    func addMember(_ tensor: String, axis: Int, atoms: [Int], role: Member.Role, node: String) throws {
        let t = try constant(tensor)
        guard axis < t.dims.count, t.dims[axis] == atoms.count else {
            throw Barrier("'\(tensor)' has \(t.dims) where \(atoms.count) channels were expected on axis \(axis)")
        }
        // A tensor used twice on one axis ties the channels of both uses.
        let key = MemberKey(tensor: tensor, axis: axis)
        for i in memberIndex[key] ?? [] { try tie(members[i].atoms, atoms) }
        memberIndex[key, default: []].append(members.count)
        members.append(Member(tensor: tensor, axis: axis, atoms: atoms, role: role, node: node))
    }

    func addUpdate(_ u: ParameterUpdate) { updates.append(u) }

    func constant(_ name: String) throws -> Tensor {
        guard let t = constants[name] else { throw Barrier("'\(name)' is not a constant") }
        return t
    }

    /// Drops this graph's references to the named constants (surgery's last step with them, so
    /// that a weight nothing else holds can be cut in place).
    func forgetConstants(_ names: some Sequence<String>) {
        for name in names { constants[name] = nil }
    }

    func isConstant(_ name: String) -> Bool { constants[name] != nil }

    func shape(_ name: String) -> [Int]? { shapes.staticShape(of: name) ?? constants[name]?.dims }

    /// Symbolic-batch-aware rank and dims (symbols as -1).
    func dims(_ name: String) -> [Int]? {
        if let t = constants[name] { return t.dims }
        return shapes.type(of: name)?.shape?.map { $0.value ?? -1 }
    }

    // MARK: the pass

    private func build() throws {
        let graph = model.graph
        let inits = Set(graph.initializers.map(\.name))
        for input in graph.inputs where !inits.contains(input.name) {
            if let d = dims(input.name), d.count >= 2, d[1] > 0 {
                layouts[input.name] = ChannelLayout(axis: 1, atoms: newSpace(name: input.name, node: input.name, opType: "input", size: d[1], pinned: "graph input '\(input.name)'"))
            }
        }
        for i in shapes.order.count == graph.nodes.count ? shapes.order : try graph.topologicalOrder() {
            let node = graph.nodes[i]
            if node.opType == "Constant" || constants[node.outputs.first ?? ""] != nil { continue }
            do {
                guard node.isDefaultDomain else { throw Barrier("custom domain '\(node.domain)'") }
                guard let rule = PruningRules.table[node.opType] else { throw Barrier("no pruning rule for \(node.opType)") }
                try rule(RuleContext(graph: self, node: node, index: i))
            } catch let barrier as Barrier {
                barriers.append((node.label, node.opType, barrier.reason))
                let reason = "\(node.opType) '\(node.label)': \(barrier.reason)"
                for name in node.inputs where !name.isEmpty { if let l = layouts[name] { pin(l.atoms, reason) } }
                for name in node.outputs where !name.isEmpty {
                    if let d = dims(name), d.count >= 2, d[1] > 0 {
                        layouts[name] = ChannelLayout(axis: 1, atoms: newSpace(name: name, node: node.label, opType: node.opType, size: d[1], pinned: reason))
                    } else {
                        layouts[name] = nil
                    }
                }
            }
        }
        for output in graph.outputs {
            if let l = layouts[output.name] { pin(l.atoms, "graph output '\(output.name)'") }
        }
    }
}

/// What a pruning rule sees of one node.
struct RuleContext {
    let graph: DependencyGraph
    let node: Node
    let index: Int

    var label: String { node.label }

    func layout(_ i: Int) -> ChannelLayout? { node.input(i).flatMap { graph.layouts[$0] } }

    func requireLayout(_ i: Int) throws -> ChannelLayout {
        guard let l = layout(i) else { throw Barrier("input \(i) has no known channels") }
        return l
    }

    func setOutput(_ k: Int, _ layout: ChannelLayout?) {
        guard k < node.outputs.count, !node.outputs[k].isEmpty else { return }
        graph.layouts[node.outputs[k]] = layout
    }

    func dims(_ i: Int) -> [Int]? { node.input(i).flatMap { graph.dims($0) } }

    func outputDims(_ k: Int = 0) -> [Int]? { k < node.outputs.count ? graph.dims(node.outputs[k]) : nil }

    /// Integer contents of a constant input, or of an attribute when the input is absent.
    func ints(_ i: Int, attribute: String? = nil) throws -> [Int]? {
        if let name = node.input(i) {
            guard let v = graph.constants[name]?.int64Values() else { throw Barrier("input '\(name)' is not a constant") }
            return v.map { Int($0) }
        }
        return attribute.flatMap { node.ints($0) }
    }
}
