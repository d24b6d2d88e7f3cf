import Foundation
import TopiaryPruning

/// `topiary inspect --groups`: every dependency group with its members, width, and whether and
/// why it may not be pruned, plus the nodes that stopped the analysis.
public struct GroupListing: Codable {
    public struct Group: Codable {
        public var id: Int
        public var width: Int
        public var prunable: Int
        public var producers: [String]
        public var members: [String]
        public var pinned: [String]
    }

    public struct Stop: Codable {
        public var node: String
        public var op: String
        public var reason: String
    }

    public var schema = "topiary.groups/1"
    public var groups: [Group]
    public var barriers: [Stop]

    public init(_ analysis: DependencyAnalysis) {
        groups = analysis.groups.filter { $0.width > 0 }.map {
            Group(id: $0.id, width: $0.width, prunable: $0.prunableClasses.count, producers: $0.producers, members: $0.members, pinned: $0.pinReasons)
        }
        barriers = analysis.barriers.map { Stop(node: $0.node, op: $0.op, reason: $0.reason) }
    }

    public func json() throws -> String {
        try StableJSON.encode(self) + "\n"
    }

    public func text() -> String {
        var out = "\(groups.count) groups, \(groups.filter { $0.prunable > 0 }.count) prunable\n"
        for g in groups {
            let state = g.prunable == g.width ? "prunable" : g.prunable == 0 ? "pinned" : "\(g.prunable) of \(g.width) prunable"
            out += "\ngroup \(g.id): \(g.width) channels, \(state)\n"
            out += "  created by: \(g.producers.joined(separator: ", "))\n"
            out += "  members:    \(g.members.joined(separator: ", "))\n"
            for p in g.pinned { out += "  pinned:     \(p)\n" }
        }
        if !barriers.isEmpty {
            out += "\nbarriers:\n"
            for b in barriers { out += "  \(b.node) (\(b.op)): \(b.reason)\n" }
        }
        return out
    }
}
