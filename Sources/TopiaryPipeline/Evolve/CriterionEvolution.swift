import Foundation
import TopiaryEngine
import TopiaryIR
import TopiaryPruning

/// A small genetic-programming search for a pruning formula (the evolved-metrics line of work):
/// random expression trees over per-filter statistics, scored by pruning a copy of the model to
/// the target with the formula, recalibrating BatchNorm on training batches and measuring top-1 on
/// held-out samples; tournament selection, subtree crossover and mutation, elitism.
public enum CriterionEvolution {
    public struct Options: Sendable {
        public var target: PruningTarget = .flops(0.5)
        public var population = 12
        public var generations = 5
        public var seed: UInt64 = 0
        public var useCalibration = true
        public init() {}
    }

    public struct Scored: Sendable {
        public var formula: Formula
        public var score: Double
    }

    /// Runs the search; `progress` is called after each generation with the best so far.
    public static func run(model: Model, data: Dataset, options: Options, progress: ((Int, [Scored]) -> Void)? = nil) throws -> [Scored] {
        var rng = SplitMix(seed: options.seed)
        var variables = ["l1", "l2", "mean", "std", "max", "bn_gamma", "bn_beta", "fan_in"]
        var calibration: CalibrationData?
        if options.useCalibration {
            let g = try Calibration.gather(model: model, data: data, batches: 2, seed: options.seed)
            calibration = CalibrationData(channelTaylor: g.channelTaylor, filterGradientNorm: g.filterGradientNorm, batches: g.batches)
            variables += ["taylor", "grad_l2"]
        }
        let fitness = SearchFitness.make(train: data, validation: nil, seed: options.seed)
        let base = try ModelFile.encode(model)
        var cache: [String: Double] = [:]

        func score(_ f: Formula) throws -> Double {
            if let s = cache[f.text] { return s }
            let candidate = try base.withUnsafeBytes { try ModelFile.decode($0) }
            let importance = try FormulaImportance(f.text)
            let pruneOptions = PruningOptions(criterion: importance, allocation: AllocationOptions(target: options.target, strategy: .uniform))
            _ = try Pruner.mask(candidate, options: pruneOptions, calibration: calibration)
            let s = try fitness(candidate) - 1e-4 * Double(f.size)  // prefer shorter formulas on ties
            cache[f.text] = s
            return s
        }

        func leaf() -> Formula {
            rng.nextUnit() < 0.8 ? .variable(variables[rng.below(variables.count)]) : .number(Double([0.5, 1, 2, 3][rng.below(4)]))
        }
        func random(_ depth: Int) -> Formula {
            if depth == 0 || rng.nextUnit() < 0.3 { return leaf() }
            switch rng.below(4) {
            case 0: return .call(["abs", "sqrt", "log"][rng.below(3)], [random(depth - 1)])
            case 1: return .call(["min", "max"][rng.below(2)], [random(depth - 1), random(depth - 1)])
            default: return .binary(Array("+-*/")[rng.below(4)], random(depth - 1), random(depth - 1))
            }
        }
        func subtrees(_ f: Formula) -> [Formula] {
            switch f {
            case .number, .variable: return [f]
            case .unary(_, let a): return [f] + subtrees(a)
            case .binary(_, let a, let b): return [f] + subtrees(a) + subtrees(b)
            case .call(_, let args): return [f] + args.flatMap(subtrees)
            }
        }
        /// `f` with its `index`-th subtree (pre-order) replaced by `r`.
        func replace(_ f: Formula, _ index: Int, with r: Formula) -> Formula {
            var counter = 0
            func go(_ g: Formula) -> Formula {
                defer { counter += 1 }
                if counter == index { return r }
                switch g {
                case .number, .variable: return g
                case .unary(let op, let a): counter += 1; let x = go(a); counter -= 1; return .unary(op, x)
                case .binary(let op, let a, let b):
                    counter += 1; let x = go(a); let y = go(b); counter -= 1
                    return .binary(op, x, y)
                case .call(let n, let args):
                    counter += 1; let xs = args.map { go($0) }; counter -= 1
                    return .call(n, xs)
                }
            }
            return go(f)
        }
        func mutate(_ f: Formula) -> Formula {
            let n = subtrees(f).count
            let out = replace(f, rng.below(n), with: random(2))
            return out.size > 25 ? f : out
        }
        func crossover(_ a: Formula, _ b: Formula) -> Formula {
            let donor = subtrees(b)
            let out = replace(a, rng.below(subtrees(a).count), with: donor[rng.below(donor.count)])
            return out.size > 25 ? a : out
        }

        // The usual criteria start the population, so the search has them to beat.
        var population: [Scored] = []
        for seed in ["l1", "l2", "abs(bn_gamma)", "(l2 * abs(bn_gamma))"] + (options.useCalibration ? ["taylor"] : []) {
            let f = try Formula.parse(seed)
            population.append(Scored(formula: f, score: try score(f)))
        }
        while population.count < options.population {
            let f = random(3)
            population.append(Scored(formula: f, score: try score(f)))
        }
        for gen in 1...max(options.generations, 1) {
            population.sort { $0.score > $1.score }
            var next = Array(population.prefix(max(2, options.population / 4)))
            func pick() -> Formula {
                let a = population[rng.below(population.count)], b = population[rng.below(population.count)]
                return a.score >= b.score ? a.formula : b.formula
            }
            while next.count < options.population {
                let child = rng.nextUnit() < 0.6 ? crossover(pick(), pick()) : mutate(pick())
                next.append(Scored(formula: child, score: try score(child)))
            }
            population = next.sorted { $0.score > $1.score }
            progress?(gen, Array(population.prefix(3)))
        }
        // Distinct formulas, best first.
        var seen = Set<String>()
        return population.filter { seen.insert($0.formula.text).inserted }
    }
}
