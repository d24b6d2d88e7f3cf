import Foundation
import TopiaryIR

/// Renders a `ModelReport` as an aligned terminal table, Markdown or JSON.
public enum ReportRenderer {
    public static func json(_ report: ModelReport) throws -> String {
        try StableJSON.encode(report)
    }

    public static func text(_ report: ModelReport, perLayer: Bool) -> String {
        var out = "\(report.model)\n"
        out += "  producer  \(report.producer.isEmpty ? "?" : report.producer)   IR \(report.irVersion)   opsets "
        out += report.opsets.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ") + "\n"
        for p in report.inputs { out += "  input     \(p.name): \(p.type)\n" }
        for p in report.outputs { out += "  output    \(p.name): \(p.type)\n" }
        out += "\n"
        out += Table(headers: ["", "params", "MACs", "FLOPs", "activations"], rightAligned: [1, 2, 3, 4], rows: [
            ["total", count(report.totals.params), count(report.totals.macs), count(report.totals.flops), bytes(report.totals.activationBytes)],
        ]).render()
        out += "\n"
        let ops = report.byOp.sorted { ($0.value.flops, $0.key) > ($1.value.flops, $1.key) }
        out += Table(headers: ["op", "count", "params", "MACs", "FLOPs", "FLOPs %"], rightAligned: [1, 2, 3, 4, 5], rows: ops.map { op, t in
            [op, String(t.count), count(t.params), count(t.macs), count(t.flops), percent(t.flops, report.totals.flops)]
        }).render()
        if perLayer {
            out += "\n"
            out += Table(headers: ["node", "op", "output", "params", "MACs", "FLOPs"], rightAligned: [3, 4, 5], rows: report.nodes.map { n in
                [n.name, n.opType, n.outputShape, count(n.params), count(n.macs), n.analysed ? count(n.flops) : "?"]
            }).render()
        }
        if !report.unanalysed.isEmpty {
            out += "\nnot analysed (\(report.unanalysed.count)):\n"
            for u in report.unanalysed { out += "  \(u.node) (\(u.op)): \(u.reason)\n" }
        }
        return out
    }

    public static func markdown(_ report: ModelReport, perLayer: Bool) -> String {
        var out = "# \(report.model)\n\n"
        out += "| | params | MACs | FLOPs | activations |\n|---|---:|---:|---:|---:|\n"
        out += "| total | \(report.totals.params) | \(report.totals.macs) | \(report.totals.flops) | \(report.totals.activationBytes) B |\n\n"
        out += "| op | count | params | MACs | FLOPs |\n|---|---:|---:|---:|---:|\n"
        for (op, t) in report.byOp.sorted(by: { ($0.value.flops, $0.key) > ($1.value.flops, $1.key) }) {
            out += "| \(op) | \(t.count) | \(t.params) | \(t.macs) | \(t.flops) |\n"
        }
        if perLayer {
            out += "\n| node | op | output | params | MACs | FLOPs |\n|---|---|---|---:|---:|---:|\n"
            for n in report.nodes {
                out += "| \(n.name) | \(n.opType) | \(n.outputShape) | \(n.params) | \(n.macs) | \(n.analysed ? String(n.flops) : "?") |\n"
            }
        }
        if !report.unanalysed.isEmpty {
            out += "\nNot analysed:\n\n"
            for u in report.unanalysed { out += "- `\(u.node)` (\(u.op)): \(u.reason)\n" }
        }
        return out
    }

    /// 42938 → "42.94 K".
    public static func count(_ n: Int) -> String {
        let v = Double(n)
        switch abs(v) {
        case 1e9...: return String(format: "%.2f G", v / 1e9)
        case 1e6...: return String(format: "%.2f M", v / 1e6)
        case 1e3...: return String(format: "%.2f K", v / 1e3)
        default: return String(n)
        }
    }

    static func bytes(_ n: Int) -> String {
        let v = Double(n)
        let kib = 1024.0, mib = kib * 1024, gib = mib * 1024
        if v >= gib { return String(format: "%.2f GiB", v / gib) }
        if v >= mib { return String(format: "%.2f MiB", v / mib) }
        if v >= kib { return String(format: "%.1f KiB", v / kib) }
        return "\(n) B"
    }

    static func percent(_ part: Int, _ whole: Int) -> String {
        whole == 0 ? "-" : String(format: "%.1f", 100 * Double(part) / Double(whole))
    }
}

/// A plain-text table with columns padded to their widest cell.
struct Table {
    var headers: [String]
    var rightAligned: Set<Int>
    var rows: [[String]]

    func render() -> String {
        var widths = headers.map(\.count)
        for r in rows { for (i, c) in r.enumerated() where i < widths.count { widths[i] = max(widths[i], c.count) } }
        func line(_ cells: [String]) -> String {
            cells.enumerated().map { i, c in
                let pad = String(repeating: " ", count: widths[i] - c.count)
                return rightAligned.contains(i) ? pad + c : c + pad
            }.joined(separator: "  ").replacingOccurrences(of: "\\s+$", with: "", options: .regularExpression) + "\n"
        }
        var out = line(headers)
        out += line(widths.map { String(repeating: "-", count: $0) })
        for r in rows { out += line(r) }
        return out
    }
}
