import Foundation
import TopiaryIR


/// A syntax or name error in a formula, at a 1-based column.
public struct FormulaError: Error, CustomStringConvertible, Equatable {
    public let column: Int
    public let message: String
    public var description: String { "column \(column): \(message)" }
}

/// A parsed formula over per-filter statistics: arithmetic (+ − × ÷ ^), unary minus, abs, sqrt,
/// log, exp, min, max, numbers and the variables in `Formula.variables`.
public indirect enum Formula: Equatable, Sendable {
    case number(Double)
    case variable(String)
    case unary(String, Formula)
    case binary(Character, Formula, Formula)
    case call(String, [Formula])

    /// Per-filter statistics a formula may use.
    public static let variables: [String: String] = [
        "l1": "sum of |w| of the filter", "l2": "L2 norm of the filter", "mean": "mean of w", "std": "standard deviation of w",
        "max": "largest |w|", "bn_gamma": "γ of the BatchNormalization on the channel (0 if none)", "bn_beta": "β of that BatchNormalization",
        "taylor": "Taylor importance from calibration data", "grad_l2": "L2 norm of the filter's gradient on calibration data",
        "fan_in": "number of weights in the filter",
    ]
    static let functions: [String: Int] = ["abs": 1, "sqrt": 1, "log": 1, "exp": 1, "min": 2, "max": 2]

    /// Parses `text`; errors carry the column.
    public static func parse(_ text: String) throws -> Formula {
        var p = FormulaParser(Array(text))
        let f = try p.expression()
        p.skipSpace()
        if p.i < p.chars.count { throw FormulaError(column: p.i + 1, message: "unexpected '\(p.chars[p.i])'") }
        return f
    }

    /// The formula as text that parses back to it (fully parenthesised where needed).
    public var text: String {
        switch self {
        case .number(let x): return x == x.rounded() && abs(x) < 1e6 ? String(Int(x)) : String(format: "%.3g", x)
        case .variable(let v): return v
        case .unary(_, let a): return "-(\(a.text))"
        case .binary(let op, let a, let b): return "(\(a.text) \(op) \(b.text))"
        case .call(let name, let args): return "\(name)(" + args.map(\.text).joined(separator: ", ") + ")"
        }
    }

    /// Number of nodes.
    public var size: Int {
        switch self {
        case .number, .variable: return 1
        case .unary(_, let a): return 1 + a.size
        case .binary(_, let a, let b): return 1 + a.size + b.size
        case .call(_, let args): return 1 + args.reduce(0) { $0 + $1.size }
        }
    }

    /// Variables the formula reads.
    public var uses: Set<String> {
        switch self {
        case .number: return []
        case .variable(let v): return [v]
        case .unary(_, let a): return a.uses
        case .binary(_, let a, let b): return a.uses.union(b.uses)
        case .call(_, let args): return args.reduce(into: Set<String>()) { $0.formUnion($1.uses) }
        }
    }

    public func evaluate(_ env: [String: Double]) -> Double {
        switch self {
        case .number(let x): return x
        case .variable(let v): return env[v] ?? 0
        case .unary(_, let a): return -a.evaluate(env)
        case .binary(let op, let a, let b):
            let x = a.evaluate(env), y = b.evaluate(env)
            switch op {
            case "+": return x + y
            case "-": return x - y
            case "*": return x * y
            case "/": return y == 0 ? 0 : x / y
            default: return pow(x, y)
            }
        case .call(let name, let args):
            let v = args.map { $0.evaluate(env) }
            switch name {
            case "abs": return abs(v[0])
            case "sqrt": return v[0] > 0 ? v[0].squareRoot() : 0
            case "log": return v[0] > 0 ? log(v[0]) : -1e30
            case "exp": return exp(min(v[0], 700))
            case "min": return min(v[0], v[1])
            default: return max(v[0], v[1])
            }
        }
    }
}

struct FormulaParser {
    let chars: [Character]
    var i = 0

    init(_ chars: [Character]) { self.chars = chars }

    mutating func skipSpace() { while i < chars.count && chars[i].isWhitespace { i += 1 } }

    mutating func peek() -> Character? {
        skipSpace()
        return i < chars.count ? chars[i] : nil
    }

    mutating func expression() throws -> Formula {
        var left = try term()
        while let c = peek(), c == "+" || c == "-" {
            i += 1
            left = .binary(c, left, try term())
        }
        return left
    }

    mutating func term() throws -> Formula {
        var left = try unary()
        while let c = peek(), c == "*" || c == "/" {
            i += 1
            left = .binary(c, left, try unary())
        }
        return left
    }

    mutating func unary() throws -> Formula {
        if peek() == "-" {
            i += 1
            return .unary("-", try unary())
        }
        let base = try atom()
        if peek() == "^" {
            i += 1
            return .binary("^", base, try unary())
        }
        return base
    }

    mutating func atom() throws -> Formula {
        guard let c = peek() else { throw FormulaError(column: i + 1, message: "expected a number, a variable or '(' but the formula ended") }
        let start = i
        if c == "(" {
            i += 1
            let e = try expression()
            guard peek() == ")" else { throw FormulaError(column: i + 1, message: "expected ')' to close the '(' at column \(start + 1)") }
            i += 1
            return e
        }
        if c.isNumber || c == "." {
            while i < chars.count && (chars[i].isNumber || chars[i] == "." || chars[i] == "e" || ((chars[i] == "-" || chars[i] == "+") && i > start && chars[i - 1] == "e")) { i += 1 }
            guard let v = Double(String(chars[start..<i])) else { throw FormulaError(column: start + 1, message: "'\(String(chars[start..<i]))' is not a number") }
            return .number(v)
        }
        if c.isLetter || c == "_" {
            while i < chars.count && (chars[i].isLetter || chars[i].isNumber || chars[i] == "_") { i += 1 }
            let name = String(chars[start..<i])
            if peek() == "(" {
                guard let arity = Formula.functions[name] else {
                    throw FormulaError(column: start + 1, message: "unknown function '\(name)'; known: \(Formula.functions.keys.sorted().joined(separator: ", "))")
                }
                i += 1
                var args: [Formula] = []
                if peek() != ")" {
                    args.append(try expression())
                    while peek() == "," {
                        i += 1
                        args.append(try expression())
                    }
                }
                guard peek() == ")" else { throw FormulaError(column: i + 1, message: "expected ')' after the arguments of \(name)") }
                i += 1
                guard args.count == arity else { throw FormulaError(column: start + 1, message: "\(name) takes \(arity) argument(s), got \(args.count)") }
                return .call(name, args)
            }
            guard Formula.variables[name] != nil else {
                throw FormulaError(column: start + 1, message: "unknown variable '\(name)'; known: \(Formula.variables.keys.sorted().joined(separator: ", "))")
            }
            return .variable(name)
        }
        throw FormulaError(column: i + 1, message: "unexpected '\(c)'")
    }
}

/// A user formula over per-filter statistics (`criterion: "expr: l2 * abs(bn_gamma)"`), in the
/// spirit of the evolved-metrics line of work. Scored per producing filter, combined over a
/// channel's tied filters like the other criteria.
public struct FormulaImportance: Importance {
    public let formula: Formula
    public let source: String
    public let combination: ScoreCombination
    public var name: String { "expr:" + source }
    public var requirements: Set<ImportanceRequirement> {
        formula.uses.isDisjoint(with: ["taylor", "grad_l2"]) ? [] : [.activations, .gradients]
    }

    public init(_ source: String, combination: ScoreCombination = .sum) throws {
        self.source = source
        formula = try Formula.parse(source)
        self.combination = combination
    }

    public func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
        let uses = formula.uses
        if !uses.isDisjoint(with: ["taylor", "grad_l2"]) && (calibration?.channelTaylor.isEmpty ?? true) {
            throw IRError.unsupported("the formula uses taylor or grad_l2, which need calibration data (topiary prune --data, or data.train in a pipeline)")
        }
        // Per-class BatchNormalization parameters and Taylor scores.
        var gamma: [Int: Double] = [:], beta: [Int: Double] = [:], taylor: [Int: Double] = [:]
        for m in analysis.members where m.role == .bnScale || m.role == .shift {
            guard let v = analysis.graph.constants[m.tensor]?.floatValues() else { continue }
            for (p, c) in analysis.classIDs(m.atoms).enumerated() where p < v.count {
                if m.role == .bnScale { gamma[c] = Double(v[p]) } else { beta[c] = Double(v[p]) }
            }
        }
        if let calibration {
            for space in analysis.graph.spaces where space.size > 0 {
                guard let t = calibration.channelTaylor[space.name], t.count == space.size else { continue }
                for k in 0..<space.size { taylor[analysis.atomClass[space.firstAtom + k], default: 0] += t[k] }
            }
        }
        var acc = ClassScores(classes: analysis.classes.count, combination: combination)
        for (m, t) in analysis.producers {
            let filters = slices(of: t, axis: m.axis)
            let classes = analysis.classIDs(m.atoms)
            let grads = calibration?.filterGradientNorm[m.tensor]
            var s = [Double](repeating: 0, count: filters.count)
            for (p, f) in filters.enumerated() {
                let n = Double(max(f.count, 1))
                let mean = f.reduce(0, +) / n
                var env: [String: Double] = [
                    "l1": f.reduce(0) { $0 + abs($1) }, "l2": f.reduce(0) { $0 + $1 * $1 }.squareRoot(), "mean": mean,
                    "std": (f.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / n).squareRoot(), "max": f.map(abs).max() ?? 0,
                    "fan_in": n, "bn_gamma": gamma[classes[p]] ?? 0, "bn_beta": beta[classes[p]] ?? 0, "taylor": taylor[classes[p]] ?? 0,
                ]
                env["grad_l2"] = grads.flatMap { m.axis == 0 && p < $0.count ? $0[p] : nil } ?? 0
                let v = formula.evaluate(env)
                s[p] = v.isFinite ? v : (v > 0 ? 1e30 : -1e30)
            }
            // Shift so the smallest is 0: normalisation then keeps the order within the member.
            let low = s.min() ?? 0
            acc.add(s.map { $0 - min(low, 0) }, classes: classes)
        }
        return acc.result
    }
}

extension Criteria {
    /// The criterion called `name` (or an `expr:` formula), with a clear error otherwise.
    public static func parse(_ name: String, seed: UInt64 = 0, combination: ScoreCombination = .sum) throws -> any Importance {
        if name.hasPrefix("expr:") {
            return try FormulaImportance(String(name.dropFirst(5)).trimmingCharacters(in: .whitespaces), combination: combination)
        }
        guard let c = named(name, seed: seed, combination: combination) else {
            throw IRError.unsupported("unknown criterion '\(name)'; known: \(names.joined(separator: ", ")), or \"expr: <formula>\"")
        }
        return c
    }
}
