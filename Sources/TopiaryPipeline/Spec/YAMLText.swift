import Foundation

/// A small block-style YAML writer for the resolved pipeline: sorted keys, numbers as written by
/// a person (0.5, not 5e-1), strings quoted only when YAML would read them as something else.
enum YAMLText {
    static func emit(_ value: Any) -> String {
        var out = ""
        write(value, indent: 0, into: &out, inline: false)
        return out
    }

    private static func write(_ value: Any, indent: Int, into out: inout String, inline: Bool) {
        let pad = String(repeating: "  ", count: indent)
        switch value {
        case let d as [String: Any]:
            if d.isEmpty { out += " {}\n"; return }
            if inline { out += "\n" }
            for k in d.keys.sorted() {
                out += pad + k + ":"
                write(d[k]!, indent: indent + 1, into: &out, inline: true)
            }
        case let a as [Any]:
            if a.isEmpty { out += " []\n"; return }
            if inline { out += "\n" }
            for item in a {
                out += pad + "-"
                if let d = item as? [String: Any], !d.isEmpty {
                    // First key on the dash line, the rest aligned under it.
                    var first = true
                    for k in d.keys.sorted() {
                        out += (first ? " " : pad + "  ") + k + ":"
                        write(d[k]!, indent: indent + 2, into: &out, inline: true)
                        first = false
                    }
                } else {
                    write(item, indent: indent + 1, into: &out, inline: true)
                }
            }
        default:
            out += " " + scalar(value) + "\n"
        }
    }

    static func scalar(_ v: Any) -> String {
        switch v {
        case let b as Bool: return b ? "true" : "false"
        case let i as Int: return String(i)
        case let f as Float: return number(Double(f))
        case let d as Double: return number(d)
        case let s as String:
            let plain = !s.isEmpty && s.allSatisfy { $0.isLetter || $0.isNumber || "/._-".contains($0) } && Double(s) == nil
                && !["true", "false", "null", "yes", "no", "on", "off", "~"].contains(s.lowercased())
            return plain ? s : "\"" + s.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"") + "\""
        default: return "null"
        }
    }

    static func number(_ d: Double) -> String {
        if d == d.rounded() && abs(d) < 1e15 { return String(format: "%.1f", d) }
        var s = String(format: "%.6g", d)
        if !s.contains(".") && !s.contains("e") { s += ".0" }
        return s
    }
}
