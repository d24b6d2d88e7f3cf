import Foundation
import TopiaryIR

/// report.md and report.html of a pipeline run. The HTML is one self-contained file (inline CSS
/// and SVG, no scripts, nothing fetched).
public enum RunReportRenderer {
    // MARK: Markdown

    public static func markdown(_ r: RunRecord) -> String {
        var out = "# Topiary run: \(r.pipeline)\n\nModel `\(r.model)`, seed \(r.seed), \(String(format: "%.1f", r.seconds)) s.\n\n"
        out += "## Stages\n\n| # | stage | status | seconds |\n|---:|---|---|---:|\n"
        for s in r.stages { out += "| \(s.index + 1) | \(s.label) | \(s.status) | \(String(format: "%.2f", s.seconds)) |\n" }
        if !r.reports.isEmpty {
            out += "\n## Cost\n\n| report | params | MACs | FLOPs | activations |\n|---|---:|---:|---:|---:|\n"
            for (name, s) in r.reports.sorted(by: { $0.key < $1.key }) {
                out += "| \(name) | \(s.totals.params) | \(s.totals.macs) | \(s.totals.flops) | \(s.totals.activationBytes) B |\n"
            }
        }
        for p in r.pruning {
            out += "\n## Pruning (stage \(p.stage + 1): \(p.criterion), \(p.target))\n\n"
            out += String(format: "Params %d → %d (%.3f kept), FLOPs %d → %d (%.3f kept).\n\n", p.before.params, p.after.params,
                          Double(p.after.params) / Double(max(p.before.params, 1)), p.before.flops, p.after.flops, Double(p.after.flops) / Double(max(p.before.flops, 1)))
            out += "| group | created by | width |\n|---:|---|---|\n"
            for g in p.groups where g.before != g.after || g.before > 1 {
                out += "| \(g.group) | \(g.producers.first ?? "") | \(g.before) → \(g.after) |\n"
            }
        }
        for f in r.finetune {
            out += "\n## Fine-tuning (stage \(f.stage + 1))\n\n| epoch | train loss | train top-1 | val top-1 | val loss | samples/s |\n|---:|---:|---:|---:|---:|---:|\n"
            for e in f.epochs {
                out += String(format: "| %d | %.4f | %.4f | %@ | %@ | %.0f |\n", e.epoch, e.trainLoss, e.trainTop1,
                              e.validation.map { String(format: "%.4f", $0.top1) } ?? "-", e.validation.map { String(format: "%.4f", $0.loss) } ?? "-", e.samplesPerSecond)
            }
        }
        if !r.evaluations.isEmpty {
            out += "\n## Evaluation\n\n| name | data | top-1 | top-5 | loss | FLOPs | params |\n|---|---|---:|---:|---:|---:|---:|\n"
            for e in r.evaluations { out += String(format: "| %@ | %@ | %.4f | %.4f | %.4f | %d | %d |\n", e.name, e.data, e.top1, e.top5, e.loss, e.flops, e.params) }
        }
        for s in r.sweeps {
            out += "\n## Sweep (stage \(s.stage + 1))\n\n| criterion | target | FLOPs kept | params | val top-1 |\n|---|---|---:|---:|---:|\n"
            for p in s.points {
                out += String(format: "| %@ | %@ | %.3f | %d | %@ |\n", p.criterion, p.target, Double(p.flops) / Double(max(s.baselineFlops, 1)), p.params, p.top1.map { String(format: "%.4f", $0) } ?? "-")
            }
        }
        if !r.exports.isEmpty { out += "\nExported: " + r.exports.map { "`\($0)`" }.joined(separator: ", ") + "\n" }
        return out
    }

    // MARK: HTML

    static func esc(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;").replacingOccurrences(of: "\"", with: "&quot;")
    }

    public static func html(_ r: RunRecord) -> String {
        var body = "<h1>Topiary run</h1><p class=\"meta\">\(esc(r.pipeline)) · model <code>\(esc(r.model))</code> · seed \(r.seed) · \(String(format: "%.1f", r.seconds)) s · Topiary \(esc(r.topiaryVersion))</p>"
        // Headline numbers.
        var cards: [(String, String)] = []
        if let p = r.pruning.last {
            cards.append(("FLOPs kept", String(format: "%.1f %%", 100 * Double(p.after.flops) / Double(max(p.before.flops, 1)))))
            cards.append(("params", "\(ReportRenderer.count(p.before.params)) → \(ReportRenderer.count(p.after.params))"))
        }
        if let e = r.evaluations.last { cards.append(("top-1 (\(e.name))", String(format: "%.2f %%", 100 * e.top1))) }
        if let first = r.evaluations.first, let last = r.evaluations.last, r.evaluations.count > 1 {
            cards.append(("top-1 change", String(format: "%+.2f pts", 100 * (last.top1 - first.top1))))
        }
        if !cards.isEmpty {
            body += "<div class=\"cards\">" + cards.map { "<div class=\"card\"><div class=\"v\">\(esc($0.1))</div><div class=\"k\">\(esc($0.0))</div></div>" }.joined() + "</div>"
        }
        body += "<h2>Stages</h2><table><tr><th>#</th><th>stage</th><th>status</th><th class=\"n\">seconds</th></tr>"
        for s in r.stages { body += "<tr><td>\(s.index + 1)</td><td>\(esc(s.label))</td><td class=\"\(s.status == "done" ? "ok" : "bad")\">\(esc(s.status))</td><td class=\"n\">\(String(format: "%.2f", s.seconds))</td></tr>" }
        body += "</table>"
        for p in r.pruning {
            let groups = p.groups.filter { $0.before > 1 }
            body += "<h2>Channels per layer (stage \(p.stage + 1): \(esc(p.criterion)), \(esc(p.target)))</h2>"
            body += barChart(id: "channels-\(p.stage)", labels: groups.map { shortName($0.producers.first ?? "group \($0.group)") },
                             before: groups.map { Double($0.before) }, after: groups.map { Double($0.after) }, unit: "channels")
        }
        let names = r.reports.keys.sorted()
        if r.reports.count >= 2, let a = r.reports[r.stages.compactMap({ s -> String? in if case .object(let o) = s.settings, s.kind == "report", case .string(let n)? = o["name"] { return n }; return nil }).first ?? names[0]],
           let lastName = r.stages.reversed().compactMap({ s -> String? in if case .object(let o) = s.settings, s.kind == "report", case .string(let n)? = o["name"] { return n }; return nil }).first,
           let b = r.reports[lastName] {
            let heavy = a.nodes.filter { ["Conv", "Gemm", "MatMul", "ConvTranspose"].contains($0.opType) }
            let after = Dictionary(b.nodes.map { ($0.name, $0.flops) }, uniquingKeysWith: { x, _ in x })
            body += "<h2>FLOPs per layer</h2>"
            body += barChart(id: "flops", labels: heavy.map { shortName($0.name) }, before: heavy.map { Double($0.flops) },
                             after: heavy.map { Double(after[$0.name] ?? 0) }, unit: "FLOPs")
        }
        for s in r.sweeps {
            body += "<h2>Accuracy against FLOPs (sweep, stage \(s.stage + 1))</h2>" + scatter(s)
        }
        for f in r.finetune {
            body += "<h2>Fine-tuning (stage \(f.stage + 1))</h2><table><tr><th class=\"n\">epoch</th><th class=\"n\">train loss</th><th class=\"n\">train top-1</th><th class=\"n\">val top-1</th><th class=\"n\">samples/s</th></tr>"
            for e in f.epochs {
                body += String(format: "<tr><td class=\"n\">%d</td><td class=\"n\">%.4f</td><td class=\"n\">%.4f</td><td class=\"n\">%@</td><td class=\"n\">%.0f</td></tr>", e.epoch, e.trainLoss, e.trainTop1, e.validation.map { String(format: "%.4f", $0.top1) } ?? "-", e.samplesPerSecond)
            }
            body += "</table>"
        }
        if !r.evaluations.isEmpty {
            body += "<h2>Evaluation</h2><table><tr><th>name</th><th>data</th><th class=\"n\">top-1</th><th class=\"n\">top-5</th><th class=\"n\">loss</th><th class=\"n\">FLOPs</th><th class=\"n\">params</th></tr>"
            for e in r.evaluations {
                body += String(format: "<tr><td>%@</td><td>%@</td><td class=\"n\">%.4f</td><td class=\"n\">%.4f</td><td class=\"n\">%.4f</td><td class=\"n\">%@</td><td class=\"n\">%@</td></tr>",
                               esc(e.name), e.data, e.top1, e.top5, e.loss, ReportRenderer.count(e.flops), ReportRenderer.count(e.params))
            }
            body += "</table>"
        }
        if !names.isEmpty {
            body += "<h2>Cost</h2><table><tr><th>report</th><th class=\"n\">params</th><th class=\"n\">MACs</th><th class=\"n\">FLOPs</th></tr>"
            for n in names { let t = r.reports[n]!.totals; body += "<tr><td>\(esc(n))</td><td class=\"n\">\(ReportRenderer.count(t.params))</td><td class=\"n\">\(ReportRenderer.count(t.macs))</td><td class=\"n\">\(ReportRenderer.count(t.flops))</td></tr>" }
            body += "</table>"
        }
        return """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
        <title>Topiary run report</title>
        <style>
        body{font:14px/1.5 -apple-system,Segoe UI,Helvetica,Arial,sans-serif;color:#1d2433;max-width:1040px;margin:24px auto;padding:0 20px;background:#fbfbfd}
        h1{font-size:24px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e3e6ee;padding-bottom:4px}
        .meta{color:#667085;margin:0 0 16px}code{font:12px Menlo,Consolas,monospace;background:#eef0f6;padding:1px 4px;border-radius:3px}
        table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #e3e6ee}th,td{padding:5px 10px;border-bottom:1px solid #eef0f4;text-align:left}
        th{background:#f4f5f9;font-weight:600;color:#475467}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}.ok{color:#067647}.bad{color:#b42318}
        .cards{display:flex;gap:12px;flex-wrap:wrap;margin:12px 0}.card{background:#fff;border:1px solid #e3e6ee;border-radius:8px;padding:10px 16px;min-width:150px}
        .card .v{font-size:20px;font-weight:600}.card .k{color:#667085;font-size:12px}svg{background:#fff;border:1px solid #e3e6ee;border-radius:6px}
        svg text{font:11px -apple-system,Segoe UI,Helvetica,Arial,sans-serif;fill:#475467}.legend span{display:inline-block;margin-right:14px;font-size:12px;color:#475467}
        .sw{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle;border-radius:2px}
        </style></head><body>
        \(body)
        </body></html>
        """
    }

    /// A readable label from an exporter's node path: "/layers/layers.0/c1/c1.0/Conv" → "layers.0/c1.0".
    static func shortName(_ s: String) -> String {
        var base = s
        if let r = base.range(of: " (") { base = String(base[..<r.lowerBound]) }
        var parts = base.split(separator: "/").map(String.init)
        if parts.count > 1, let last = parts.last, ["Conv", "Gemm", "MatMul", "ConvTranspose"].contains(where: { last.hasPrefix($0) }) { parts.removeLast() }
        // Drop a component that only names the scope the next one refines (layers, layers.0).
        parts = parts.enumerated().filter { i, p in i + 1 >= parts.count || !parts[i + 1].hasPrefix(p + ".") }.map(\.element)
        let label = parts.joined(separator: "/")
        return String((label.isEmpty ? base : label).suffix(36))
    }

    /// Paired horizontal bars, before (grey) and after (green), one row per layer.
    static func barChart(id: String, labels: [String], before: [Double], after: [Double], unit: String) -> String {
        guard !labels.isEmpty else { return "<p>nothing to chart</p>" }
        let rowH = 22.0, left = 240.0, width = 980.0, plot = width - left - 150
        let height = Double(labels.count) * rowH + 40
        let top = max(before.max() ?? 1, after.max() ?? 1, 1)
        var svg = "<svg id=\"\(id)\" class=\"chart\" role=\"img\" aria-label=\"\(unit) per layer, before and after\" width=\"100%\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" xmlns=\"http://www.w3.org/2000/svg\">"
        for (i, label) in labels.enumerated() {
            let y = 10 + Double(i) * rowH
            let wb = plot * before[i] / top, wa = plot * after[i] / top
            svg += "<text x=\"\(Int(left - 8))\" y=\"\(Int(y + 13))\" text-anchor=\"end\">\(esc(label))</text>"
            svg += "<rect x=\"\(Int(left))\" y=\"\(Int(y + 2))\" width=\"\(String(format: "%.1f", wb))\" height=\"8\" fill=\"#c7ccd8\"><title>before: \(Int(before[i])) \(unit)</title></rect>"
            svg += "<rect x=\"\(Int(left))\" y=\"\(Int(y + 10))\" width=\"\(String(format: "%.1f", wa))\" height=\"8\" fill=\"#12b76a\"><title>after: \(Int(after[i])) \(unit)</title></rect>"
            svg += "<text x=\"\(Int(left + max(wb, wa) + 6))\" y=\"\(Int(y + 15))\">\(ReportRenderer.count(Int(before[i]))) → \(ReportRenderer.count(Int(after[i])))</text>"
        }
        svg += "</svg>"
        return svg + "<div class=\"legend\"><span><i class=\"sw\" style=\"background:#c7ccd8\"></i>before</span><span><i class=\"sw\" style=\"background:#12b76a\"></i>after</span></div>"
    }

    /// Validation top-1 against the fraction of FLOPs kept, one colour per criterion.
    static func scatter(_ s: RunRecord.Sweep) -> String {
        let points = s.points.filter { $0.top1 != nil }
        guard !points.isEmpty else { return "<p>no validation data: FLOPs only</p>" }
        let w = 640.0, h = 360.0, l = 60.0, b = 40.0, t = 20.0, rgt = 20.0
        let xs = points.map { Double($0.flops) / Double(max(s.baselineFlops, 1)) }, ys = points.map { $0.top1! }
        let x0 = max(0, (xs.min() ?? 0) - 0.05), x1 = min(1, (xs.max() ?? 1) + 0.05)
        let y0 = max(0, (ys.min() ?? 0) - 0.02), y1 = min(1, (ys.max() ?? 1) + 0.02)
        func px(_ x: Double) -> Double { l + (x - x0) / max(x1 - x0, 1e-9) * (w - l - rgt) }
        func py(_ y: Double) -> Double { h - b - (y - y0) / max(y1 - y0, 1e-9) * (h - b - t) }
        let colours = ["#2e90fa", "#f79009", "#12b76a", "#ee46bc", "#7a5af8", "#667085"]
        let criteria = Array(Set(points.map(\.criterion))).sorted()
        var svg = "<svg id=\"sweep-\(s.stage)\" class=\"chart\" role=\"img\" aria-label=\"accuracy against FLOPs\" width=\"\(Int(w))\" height=\"\(Int(h))\" viewBox=\"0 0 \(Int(w)) \(Int(h))\" xmlns=\"http://www.w3.org/2000/svg\">"
        svg += "<line x1=\"\(l)\" y1=\"\(h - b)\" x2=\"\(w - rgt)\" y2=\"\(h - b)\" stroke=\"#98a2b3\"/><line x1=\"\(l)\" y1=\"\(t)\" x2=\"\(l)\" y2=\"\(h - b)\" stroke=\"#98a2b3\"/>"
        for k in 0...4 {
            let xv = x0 + (x1 - x0) * Double(k) / 4, yv = y0 + (y1 - y0) * Double(k) / 4
            svg += "<text x=\"\(Int(px(xv)))\" y=\"\(Int(h - b + 16))\" text-anchor=\"middle\">\(String(format: "%.2f", xv))</text>"
            svg += "<text x=\"\(Int(l - 6))\" y=\"\(Int(py(yv) + 4))\" text-anchor=\"end\">\(String(format: "%.3f", yv))</text>"
        }
        svg += "<text x=\"\(Int((l + w) / 2))\" y=\"\(Int(h - 6))\" text-anchor=\"middle\">fraction of FLOPs kept</text>"
        svg += "<text x=\"14\" y=\"\(Int((t + h - b) / 2))\" transform=\"rotate(-90 14 \(Int((t + h - b) / 2)))\" text-anchor=\"middle\">validation top-1</text>"
        for (ci, c) in criteria.enumerated() {
            let ps = points.filter { $0.criterion == c }.sorted { $0.flops < $1.flops }
            let colour = colours[ci % colours.count]
            let path = ps.map { "\(String(format: "%.1f", px(Double($0.flops) / Double(max(s.baselineFlops, 1))))),\(String(format: "%.1f", py($0.top1!)))" }.joined(separator: " ")
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(colour)\" stroke-width=\"1.5\"/>"
            for p in ps {
                let x = px(Double(p.flops) / Double(max(s.baselineFlops, 1))), y = py(p.top1!)
                svg += "<circle cx=\"\(String(format: "%.1f", x))\" cy=\"\(String(format: "%.1f", y))\" r=\"4\" fill=\"\(colour)\"><title>\(esc(c)) \(esc(p.target)): top-1 \(String(format: "%.4f", p.top1!))</title></circle>"
            }
        }
        svg += "</svg>"
        return svg + "<div class=\"legend\">" + criteria.enumerated().map { "<span><i class=\"sw\" style=\"background:\(colours[$0.offset % colours.count])\"></i>\(esc($0.element))</span>" }.joined() + "</div>"
    }
}
