import Foundation
import TopiaryIR

/// Settings of the evolutionary width search.
public struct SearchOptions: Sendable {
    public var population = 8
    public var generations = 4
    public var mutationRate = 0.3
    public var seed: UInt64 = 0

    public init(population: Int = 8, generations: Int = 4, mutationRate: Double = 0.3, seed: UInt64 = 0) {
        (self.population, self.generations, self.mutationRate, self.seed) = (population, generations, mutationRate, seed)
    }
}

/// One generation's outcome, for progress display and reports.
public struct SearchProgress: Sendable {
    public var generation: Int
    public var generations: Int
    public var best: Double
    public var mean: Double
    public var evaluated: Int
}

/// Evolutionary search over per-group widths (MetaPruning-style, without a PruningNet): genomes
/// are keep-counts per prunable group, repaired to meet the cost target; each is scored by
/// `fitness` on the model with the other channels zeroed (the caller recalibrates BatchNorm and
/// measures accuracy); elites survive, children come from uniform crossover and ± steps.
enum WidthSearch {
    static func run(groups: [DependencyGroup], ranked: [[Int]], floors: [Int], step: Int, fits: (Set<Int>) -> Bool,
                    fitness: (Set<Int>) throws -> Double, options: SearchOptions, start: [Int], progress: ((SearchProgress) -> Void)?) throws -> Set<Int> {
        var rng = SplitMix(seed: options.seed)
        func removal(_ keep: [Int]) -> Set<Int> {
            var out = Set<Int>()
            for (g, k) in keep.enumerated() { out.formUnion(ranked[g].prefix(groups[g].width - k)) }
            return out
        }
        func repair(_ genome: [Int]) -> [Int] {
            var g = genome
            for i in g.indices { g[i] = min(max(g[i], floors[i]), groups[i].width) }
            var guardCount = 0
            while !fits(removal(g)) && guardCount < 10_000 {
                let candidates = g.indices.filter { g[$0] - step >= floors[$0] }
                guard let i = candidates.randomElement(using: &rng) else { break }
                g[i] -= step
                guardCount += 1
            }
            return g
        }
        var population: [([Int], Double)] = []
        var seen: [[Int]: Double] = [:]
        var evaluated = 0
        func score(_ genome: [Int]) throws -> Double {
            if let s = seen[genome] { return s }
            let s = try fitness(removal(genome))
            seen[genome] = s
            evaluated += 1
            return s
        }
        // Start from the given allocation and random variations of the full widths.
        var initial = [repair(start)]
        while initial.count < options.population {
            initial.append(repair(groups.indices.map { i in
                let w = groups[i].width
                return floors[i] + Int(Double(w - floors[i]) * (0.4 + 0.6 * rng.nextUnit()))
            }))
        }
        for g in initial { population.append((g, try score(g))) }
        for gen in 1...max(options.generations, 1) {
            population.sort { $0.1 > $1.1 }
            let elites = Array(population.prefix(max(2, options.population / 2)))
            var next = elites
            while next.count < options.population {
                let a = elites[rng.below(elites.count)].0, b = elites[rng.below(elites.count)].0
                var child = a.indices.map { rng.nextUnit() < 0.5 ? a[$0] : b[$0] }
                for i in child.indices where rng.nextUnit() < options.mutationRate {
                    child[i] += (rng.nextUnit() < 0.5 ? -1 : 1) * step * (1 + rng.below(2))
                }
                child = repair(child)
                next.append((child, try score(child)))
            }
            population = next
            let scores = population.map(\.1)
            progress?(SearchProgress(generation: gen, generations: options.generations, best: scores.max() ?? 0,
                                     mean: scores.reduce(0, +) / Double(max(scores.count, 1)), evaluated: evaluated))
        }
        population.sort { $0.1 > $1.1 }
        return removal(population[0].0)
    }
}

