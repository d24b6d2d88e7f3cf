import TopiaryIR

/// A set of channels that must be removed together: one channel of every member tensor.
public struct ChannelClass: Sendable {
    /// Index within the analysis.
    public let id: Int
    /// Group it belongs to.
    public let group: Int
    /// Why it may not be removed, when it may not.
    public let pinned: String?
}

/// A dependency group: spaces of channels tied together, with the tensors that follow them.
public struct DependencyGroup: Sendable {
    public let id: Int
    /// Channel classes of the group; its width is their count.
    public var classes: [Int]
    /// Classes that may be removed.
    public var prunableClasses: [Int]
    /// "tensor:axis" of every member, for reports.
    public var members: [String]
    /// Nodes that create the group's channels.
    public var producers: [String]
    /// Distinct reasons some channels are pinned.
    public var pinReasons: [String]

    public var width: Int { classes.count }
    public var isPrunable: Bool { !prunableClasses.isEmpty }
}

/// The dependency analysis of a model: channel classes, their groups, and everything surgery needs.
public final class DependencyAnalysis {
    let graph: DependencyGraph
    /// Class id of each atom.
    let atomClass: [Int]
    public let classes: [ChannelClass]
    public let groups: [DependencyGroup]
    /// Nodes that stopped the analysis, with the reason.
    public var barriers: [(node: String, op: String, reason: String)] { graph.barriers }

    /// Analyses `model` (which should have frozen shape inputs; see `Pruner.prepare`). Names in
    /// `ignore` (nodes, tensors or values) pin the channels they touch.
    public init(model: Model, ignore: Set<String> = [], shapes: ShapeTable? = nil) throws {
        graph = try DependencyGraph(model: model, shapes: shapes)
        if !ignore.isEmpty {
            for s in graph.spaces where ignore.contains(s.node) || ignore.contains(s.name) {
                graph.pin(Array(s.firstAtom..<(s.firstAtom + s.size)), "ignored: '\(ignore.contains(s.node) ? s.node : s.name)'")
            }
            for m in graph.members where ignore.contains(m.tensor) || ignore.contains(m.node) { graph.pin(m.atoms, "ignored: '\(ignore.contains(m.tensor) ? m.tensor : m.node)'") }
            for (name, l) in graph.layouts where ignore.contains(name) { graph.pin(l.atoms, "ignored: '\(name)'") }
        }
        // Classes: union-find roots, numbered in atom order.
        let n = graph.atomSpace.count
        var classOfRoot = [Int](repeating: -1, count: n)
        var atomClass = [Int](repeating: 0, count: n)
        var classCount = 0
        let roots = graph.roots()
        for a in 0..<n {
            let r = roots[a]
            if classOfRoot[r] < 0 {
                classOfRoot[r] = classCount
                classCount += 1
            }
            atomClass[a] = classOfRoot[r]
        }
        self.atomClass = atomClass
        var classPin = [String?](repeating: nil, count: classCount)
        for (a, reason) in graph.pins.enumerated() where reason != nil && classPin[atomClass[a]] == nil { classPin[atomClass[a]] = reason }
        // Groups: spaces joined by sharing a class.
        var spaceParent = Array(graph.spaces.indices)
        func findSpace(_ s: Int) -> Int {
            var s = s
            while spaceParent[s] != s { spaceParent[s] = spaceParent[spaceParent[s]]; s = spaceParent[s] }
            return s
        }
        var classSpace = [Int](repeating: -1, count: classCount)
        for a in 0..<n {
            let c = atomClass[a], s = graph.atomSpace[a]
            if classSpace[c] < 0 { classSpace[c] = s } else {
                let (x, y) = (findSpace(classSpace[c]), findSpace(s))
                if x != y { spaceParent[max(x, y)] = min(x, y) }
            }
        }
        var groupOfRoot = [Int](repeating: -1, count: graph.spaces.count)
        var classGroup = [Int](repeating: 0, count: classCount)
        var groupClasses: [[Int]] = []
        for c in 0..<classCount {
            let r = findSpace(classSpace[c])
            if groupOfRoot[r] < 0 {
                groupOfRoot[r] = groupClasses.count
                groupClasses.append([])
            }
            let g = groupOfRoot[r]
            classGroup[c] = g
            groupClasses[g].append(c)
        }
        classes = (0..<classCount).map { ChannelClass(id: $0, group: classGroup[$0], pinned: classPin[$0]) }
        var groups: [DependencyGroup] = groupClasses.enumerated().map { g, cs in
            DependencyGroup(id: g, classes: cs, prunableClasses: cs.filter { classPin[$0] == nil }, members: [], producers: [],
                            pinReasons: Array(Set(cs.compactMap { classPin[$0] })).sorted())
        }
        var seen = Set<String>()
        for m in graph.members {
            guard let first = m.atoms.first else { continue }
            let g = classGroup[atomClass[first]]
            let label = "\(m.tensor):\(m.axis)"
            if seen.insert(label).inserted { groups[g].members.append(label) }
        }
        for s in graph.spaces where s.size > 0 {
            let g = classGroup[atomClass[s.firstAtom]]
            groups[g].producers.append("\(s.node) (\(s.opType))")
        }
        self.groups = groups
    }

    /// Mean importance of the layers that create each group's channels, by group id, from
    /// per-value importances (HSIC of the producer's output).
    public func groupImportance(_ values: [String: Double]) -> [Int: Double] {
        var sum: [Int: Double] = [:], count: [Int: Int] = [:]
        for space in graph.spaces where space.size > 0 {
            guard let v = values[space.name] else { continue }
            let g = classes[atomClass[space.firstAtom]].group
            sum[g, default: 0] += v
            count[g, default: 0] += 1
        }
        return sum.mapValues { $0 }.reduce(into: [:]) { $0[$1.key] = $1.value / Double(count[$1.key] ?? 1) }
    }

    /// Atom ids of a member, as class ids.
    func classIDs(_ atoms: [Int]) -> [Int] { atoms.map { atomClass[$0] } }

    /// Producing filters (Conv output axes, Gemm rows …) with their weight tensors: what the
    /// weight-based criteria score. Filters whose channels are all pinned are left out (only
    /// prunable classes are ranked; a classifier's weights are often the largest tensor).
    var producers: [(member: Member, tensor: Tensor)] {
        graph.members.compactMap { m in
            guard m.role == .producer, m.atoms.contains(where: { classes[atomClass[$0]].pinned == nil }),
                  let t = graph.constants[m.tensor] else { return nil }
            return (m, t)
        }
    }

    /// Members of the analysis (tensor axes that follow channels).
    var members: [Member] { graph.members }

    /// The model analysed.
    public var model: Model { graph.model }

    /// For every activation whose channel axis loses channels when `removed` goes: the positions
    /// (in the unpruned tensor) of the channels that stay, in order. What ties a pruned network's
    /// features to its unpruned teacher's.
    func keptChannels(removing removed: Set<Int>) -> [String: [Int]] {
        var out: [String: [Int]] = [:]
        for (name, layout) in graph.layouts {
            guard layout.axis == 1, layout.atoms.contains(where: { removed.contains(atomClass[$0]) }) else { continue }
            out[name] = layout.atoms.indices.filter { !removed.contains(atomClass[layout.atoms[$0]]) }
        }
        return out
    }
}
