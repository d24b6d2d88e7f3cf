import Foundation
import TopiaryIR
import TopiaryPruning

/// What `topiary prune` reports: costs before and after, and the width of every group.
public struct PruneSummary: Codable {
    public var schema = "topiary.prune/1"
    public var model: String
    public var output: String
    public var criterion: String
    public var allocation: String
    public var before: CostTotals
    public var after: CostTotals
    public var groups: [GroupWidth]

    public init(model: String, output: String, criterion: String, allocation: String, before: CostTotals, after: CostTotals, groups: [GroupWidth]) {
        self.model = model
        self.output = output
        self.criterion = criterion
        self.allocation = allocation
        self.before = before
        self.after = after
        self.groups = groups
    }

    public func json() throws -> String {
        try StableJSON.encode(self) + "\n"
    }

    public func text() -> String {
        func ratio(_ a: Int, _ b: Int) -> String { b == 0 ? "-" : String(format: "%.3f", Double(a) / Double(b)) }
        var out = "pruned \(model) -> \(output) (criterion \(criterion), \(allocation))\n\n"
        out += Table(headers: ["", "before", "after", "kept"], rightAligned: [1, 2, 3], rows: [
            ["params", ReportRenderer.count(before.params), ReportRenderer.count(after.params), ratio(after.params, before.params)],
            ["MACs", ReportRenderer.count(before.macs), ReportRenderer.count(after.macs), ratio(after.macs, before.macs)],
            ["FLOPs", ReportRenderer.count(before.flops), ReportRenderer.count(after.flops), ratio(after.flops, before.flops)],
        ]).render()
        out += "\n"
        out += Table(headers: ["group", "width", "", "created by"], rightAligned: [0, 1], rows: groups.map { g in
            [String(g.group), "\(g.before) -> \(g.after)", g.before == g.after ? "" : "-\(g.before - g.after)", g.producers.prefix(3).joined(separator: ", ") + (g.producers.count > 3 ? ", … (\(g.producers.count))" : "")]
        }).render()
        return out
    }
}
