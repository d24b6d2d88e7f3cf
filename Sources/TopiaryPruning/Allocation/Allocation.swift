import Foundation
import TopiaryIR

/// What pruning aims for.
public enum PruningTarget: Sendable, Equatable {
    /// Fraction of each group's channels to remove (uniform) or of all prunable channels (global).
    case ratio(Double)
    /// Fraction of the model's FLOPs to keep.
    case flops(Double)
    /// Fraction of the model's parameters to keep.
    case params(Double)
}

/// How removals are spread over the groups.
public enum AllocationStrategy: String, Sendable, CaseIterable {
    /// Every group loses the same fraction of its channels (with a FLOPs or parameter target, what
    /// rounding leaves of the budget goes back to the groups that lost the most).
    case uniform
    /// One ranking of all channels, scores normalised within each group.
    case global
    /// One ranking of all channels by (normalised) score per unit of what removing the channel
    /// saves (FLOPs, or parameters for a parameter target): the greedy answer to the knapsack of
    /// keeping the most importance within the budget. With a ratio target, as `global`.
    case globalCost = "global_cost"
    /// Keep-ratios per group from layer importance (HSIC with the output, ITPruner): a group keeps
    /// a fraction proportional to its importance, scaled to meet the target; channels within a
    /// group go by the criterion's scores.
    case hsic
    /// Evolutionary search over per-group widths, each candidate scored by the caller's fitness
    /// (accuracy of the masked model after BatchNorm recalibration).
    case search
}

/// Options of an allocation.
public struct AllocationOptions: Sendable {
    public var target: PruningTarget
    public var strategy: AllocationStrategy
    /// Keep-counts are multiples of this (1: no rounding).
    public var roundTo: Int
    /// No group keeps fewer channels than this.
    public var minChannels: Int
    /// Largest fraction of any group's channels that may be removed (1: no limit). Keeps a
    /// one-shot global ranking from taking a whole group down to `minChannels`.
    public var maxGroupRatio: Double = 1
    /// Importance of each group (by group id), for `hsic`.
    public var groupImportance: [Int: Double] = [:]
    /// For `search`.
    public var search = SearchOptions()
    /// Normalise scores within each group before a global ranking (off for criteria whose scores
    /// share one scale, such as estimated loss increases).
    public var normaliseScores = true
    /// By the group's largest score or by its mean (Torch-Pruning's default normaliser).
    public var normalisation: ScoreNormalisation = .max
    /// Classes an earlier round already removed (gradual pruning masks them): removed first, and
    /// left out of their group's normaliser, as if they were gone.
    public var pinned: Set<Int> = []

    public init(target: PruningTarget, strategy: AllocationStrategy = .uniform, roundTo: Int = 1, minChannels: Int = 1) {
        self.target = target
        self.strategy = strategy
        self.roundTo = max(1, roundTo)
        self.minChannels = max(1, minChannels)
    }
}

/// What a group's scores are divided by before one global ranking across groups.
public enum ScoreNormalisation: String, Sendable, CaseIterable {
    /// The group's largest score: every group's best channel scores 1.
    case max
    /// The group's mean score: a group with one outstanding channel does not push the rest of its
    /// channels down the ranking.
    case mean
}

/// A target that cannot be reached, with how close it can get.
public struct UnreachableTarget: Error, CustomStringConvertible {
    public let description: String
}

/// Prunable classes of each group, least important first (ties by class id).
func rankClasses(_ groups: [DependencyGroup], _ scores: [Double]) -> [[Int]] {
    groups.map { g in
        var keyed = g.prunableClasses.map { RankKey(score: scores[$0], id: $0) }
        keyed.withUnsafeMutableBufferPointer { RankKey.sort($0) }
        return keyed.map(\.id)
    }
}

/// The `count` prunable classes of `group` that rank lowest, in no particular order: the first
/// `count` of `rankClasses`' order, found by selection.
func lowestClasses(_ group: DependencyGroup, _ scores: [Double], count: Int) -> [Int] {
    if count <= 0 { return [] }
    var keyed = group.prunableClasses.map { RankKey(score: scores[$0], id: $0) }
    if count >= keyed.count { return group.prunableClasses }
    keyed.withUnsafeMutableBufferPointer { RankKey.select($0, count: count) }
    return keyed.prefix(count).map(\.id)
}

/// A class and its score, ordered by score and then id. Ids are distinct, so the order is total
/// and an unstable sort gives one answer (the standard library's stable merge sort took two
/// thirds of allocation time on EfficientNet-B0).
struct RankKey {
    var score: Double
    var id: Int

    static func < (a: RankKey, b: RankKey) -> Bool { a.score < b.score || (a.score == b.score && a.id < b.id) }

    /// Reorders `v` so that its first `count` elements are the `count` smallest (Hoare's
    /// selection, median of three).
    static func select(_ v: UnsafeMutableBufferPointer<RankKey>, count: Int) {
        var lo = 0, hi = v.count - 1
        while hi > lo {
            let (i, j) = partition(v, lo, hi)
            // Now v[lo...j] ≤ pivot ≤ v[i...hi], and anything between is the pivot.
            if count < j + 1 { hi = j } else if count > i { lo = i } else { return }
        }
    }

    /// Hoare partition of v[lo...hi] around the median of its ends and middle.
    private static func partition(_ v: UnsafeMutableBufferPointer<RankKey>, _ lo: Int, _ hi: Int) -> (Int, Int) {
        let mid = lo + (hi - lo) / 2
        if v[mid] < v[lo] { v.swapAt(mid, lo) }
        if v[hi] < v[lo] { v.swapAt(hi, lo) }
        if v[hi] < v[mid] { v.swapAt(hi, mid) }
        let pivot = v[mid]
        var i = lo, j = hi
        while i <= j {
            while v[i] < pivot { i += 1 }
            while pivot < v[j] { j -= 1 }
            if i <= j { v.swapAt(i, j); i += 1; j -= 1 }
        }
        return (i, j)
    }

    /// Quicksort (median of three) with insertion sort below 16 elements.
    static func sort(_ v: UnsafeMutableBufferPointer<RankKey>) {
        var stack: [(Int, Int)] = [(0, v.count - 1)]
        while let (lo, hi) = stack.popLast() {
            if hi - lo < 16 {
                if hi > lo {
                    for i in (lo + 1)...hi {
                        let x = v[i]
                        var j = i - 1
                        while j >= lo && x < v[j] { v[j + 1] = v[j]; j -= 1 }
                        v[j + 1] = x
                    }
                }
                continue
            }
            let (i, j) = partition(v, lo, hi)
            if lo < j { stack.append((lo, j)) }
            if i < hi { stack.append((i, hi)) }
        }
    }
}

/// The classes chosen for removal.
public struct Allocation {
    public var removed: Set<Int>

    /// Chooses classes to remove under `options`, using `scores` (one per class) and, for FLOPs and
    /// parameter targets, the estimator `makeEstimator` builds.
    public static func allocate(_ analysis: DependencyAnalysis, scores: [Double], options: AllocationOptions, makeEstimator: () -> CostEstimator,
                                fitness: ((Set<Int>) throws -> Double)? = nil, progress: ((SearchProgress) -> Void)? = nil) throws -> Allocation {
        // Pinned classes rank below every real score.
        let scores = options.pinned.isEmpty ? scores : scores.indices.map { options.pinned.contains($0) ? -Double.infinity : scores[$0] }
        if options.strategy == .search {
            guard let fitness else { throw UnreachableTarget(description: "allocation search needs data to score candidates") }
            var start = options
            start.strategy = .global
            let first = try allocate(analysis, scores: scores, options: start, makeEstimator: makeEstimator)
            let estimator = makeEstimator()
            let groups = analysis.groups.filter(\.isPrunable)
            let ranked = rankClasses(groups, scores)
            let floors: [Int] = groups.map { g in
            max(min(options.minChannels, g.width), g.width - g.prunableClasses.count, g.width - Int((Double(g.width) * options.maxGroupRatio).rounded(.down)))
        }
            let startKeep = groups.map { g in g.width - g.classes.filter { first.removed.contains($0) }.count }
            let fits: (Set<Int>) -> Bool = { removed in
                let e = estimator.estimate(removing: removed)
                switch options.target {
                case .flops(let f): return e.flops <= f * estimator.base.flops + 1e-9
                case .params(let p): return e.params <= p * estimator.base.params + 1e-9
                case .ratio(let r):
                    let total = groups.reduce(0) { $0 + $1.prunableClasses.count }
                    return Double(removed.count) >= r * Double(total) - 0.5
                }
            }
            var o = options.search
            o.seed = options.search.seed
            return Allocation(removed: try WidthSearch.run(groups: groups, ranked: ranked, floors: floors, step: max(options.roundTo, 1), fits: fits,
                                                           fitness: fitness, options: o, start: startKeep, progress: progress))
        }
        let groups = analysis.groups.filter(\.isPrunable)
        // Built once, when a cost target or global_cost needs it.
        lazy var estimator = makeEstimator()
        // Prunable classes of each group, least important first (sorted when first needed: a
        // single uniform cut at a ratio only selects).
        lazy var ranked = rankClasses(groups, scores)
        let ratioTarget: Bool = { if case .ratio = options.target { return true }; return false }()
        let floors: [Int] = groups.map { g in
            max(min(options.minChannels, g.width), g.width - g.prunableClasses.count, g.width - Int((Double(g.width) * options.maxGroupRatio).rounded(.down)))
        }

        func keepCount(_ g: Int, removing want: Int) -> Int {
            let width = groups[g].width
            var keep = max(width - want, floors[g])
            if options.roundTo > 1 && width >= options.roundTo {
                keep = Int((Double(keep) / Double(options.roundTo)).rounded()) * options.roundTo
                keep = max(keep, options.roundTo)
                if keep < floors[g] { keep = Int((Double(floors[g]) / Double(options.roundTo)).rounded(.up)) * options.roundTo }
            }
            return min(max(keep, floors[g]), width)
        }

        func uniform(_ ratio: Double) -> Set<Int> {
            var out = Set<Int>()
            for (g, group) in groups.enumerated() {
                let keep = keepCount(g, removing: Int((Double(group.width) * ratio).rounded()))
                if ratioTarget {
                    out.formUnion(lowestClasses(group, scores, count: group.width - keep))
                } else {
                    out.formUnion(ranked[g].prefix(group.width - keep))
                }
            }
            return out
        }

        // Global order: scores normalised by the group's largest prunable score (computed only
        // when a global ranking is asked for).
        lazy var globalOrder: [(cls: Int, group: Int)] = {
            // For global_cost: what removing one channel of each group saves, relative to the mean.
            var saving: [Double]?
            if options.strategy == .globalCost, !ratioTarget {
                let byParams: Bool = { if case .params = options.target { return true }; return false }()
                let base = byParams ? estimator.base.params : estimator.base.flops
                let one: [Double] = groups.map { g in
                    guard let c = g.prunableClasses.first else { return 0 }
                    let e = estimator.estimate(removing: [c])
                    return max(base - (byParams ? e.params : e.flops), 0)
                }
                let mean = one.reduce(0, +) / Double(max(one.count, 1))
                saving = one.map { mean > 0 ? max($0 / mean, 1e-6) : 1 }
            }
            var all: [(Double, Int, Int)] = []
            for (g, r) in ranked.enumerated() {
                let live = r.filter { scores[$0].isFinite }
                let top = options.normalisation == .max ? (live.map { scores[$0] }.max() ?? 0)
                    : live.reduce(0.0) { $0 + scores[$1] } / Double(max(live.count, 1))
                for c in r {
                    let score = !scores[c].isFinite || !options.normaliseScores ? scores[c] : (top > 0 ? scores[c] / top : 0)
                    all.append((saving.map { score / $0[g] } ?? score, c, g))
                }
            }
            return all.sorted { ($0.0, $0.1) < ($1.0, $1.1) }.map { ($0.1, $0.2) }
        }()

        func global(_ count: Int) -> Set<Int> {
            var wanted = [Int](repeating: 0, count: groups.count)
            var taken = 0
            for (_, g) in globalOrder where taken < count {
                if groups[g].width - wanted[g] > floors[g] {
                    wanted[g] += 1
                    taken += 1
                }
            }
            var out = Set<Int>()
            for g in groups.indices { out.formUnion(ranked[g].prefix(groups[g].width - keepCount(g, removing: wanted[g]))) }
            return out
        }

        // HSIC: keep-ratio of group g is clamp(c · s_g / mean(s)); x ∈ [0, 1] maps to c from its
        // largest useful value (keep everything) down to 0 (every group at its floor).
        let importance: [Double] = groups.map { options.groupImportance[$0.id] ?? 0 }
        let meanImportance = importance.isEmpty ? 1 : max(importance.reduce(0, +) / Double(importance.count), 1e-12)
        let relative = importance.map { max($0 / meanImportance, 1e-6) }
        let cMax = 1 / (relative.min() ?? 1)
        func hsic(_ x: Double) -> Set<Int> {
            let c = (1 - x) * cMax
            var out = Set<Int>()
            for (g, group) in groups.enumerated() {
                let keepRatio = min(1, c * relative[g])
                let keep = keepCount(g, removing: group.width - Int((Double(group.width) * keepRatio).rounded()))
                out.formUnion(ranked[g].prefix(group.width - keep))
            }
            return out
        }

        // Uniform under a cost target: one ratio for every group, rounded per group, leaves part of
        // the budget unspent (on small models a whole rounding step: for a 0.45 FLOPs
        // target, 0.41 of the MACs kept). Give channels back, one rounding step at a time, to the group that has lost the
        // largest fraction of its width, while the target still holds: the widths stay as even as
        // the budget allows.
        func topUp(_ start: Set<Int>, fits: (Set<Int>) -> Bool) -> Set<Int> {
            var removed = start
            var count = groups.map { g in g.classes.filter { start.contains($0) }.count }
            var open = Set(groups.indices.filter { count[$0] > 0 })
            while let g = open.max(by: { a, b in
                let fa = Double(count[a]) / Double(groups[a].width), fb = Double(count[b]) / Double(groups[b].width)
                return fa < fb || (fa == fb && a > b)
            }) {
                let width = groups[g].width
                let step = options.roundTo > 1 && width >= options.roundTo ? options.roundTo : 1
                let back = min(step, count[g])
                // The best-ranked of the removed classes come back first.
                let returning = ranked[g][(count[g] - back)..<count[g]]
                let trial = removed.subtracting(returning)
                if fits(trial) {
                    removed = trial
                    count[g] -= back
                    if count[g] == 0 { open.remove(g) }
                } else {
                    open.remove(g)  // costs only grow from here: this group's next step will not fit either
                }
            }
            return removed
        }

        let total = groups.reduce(0) { $0 + $1.prunableClasses.count }
        func candidate(_ x: Double) -> Set<Int> {
            switch options.strategy {
            case .uniform: return uniform(x)
            case .global, .globalCost: return global(Int((x * Double(total)).rounded()))
            case .hsic: return hsic(x)
            case .search: return global(Int((x * Double(total)).rounded()))
            }
        }

        switch options.target {
        case .ratio(let r):
            guard r >= 0 && r < 1 else { throw UnreachableTarget(description: "ratio \(r) must be in [0, 1)") }
            if options.strategy == .hsic {
                // The x whose removal count is closest to r of the prunable channels.
                let want = Int((r * Double(total)).rounded())
                var lo = 0.0, hi = 1.0
                for _ in 0..<40 {
                    let mid = (lo + hi) / 2
                    if hsic(mid).count < want { lo = mid } else { hi = mid }
                }
                return Allocation(removed: hsic(hi))
            }
            return Allocation(removed: candidate(r))
        case .flops(let keep), .params(let keep):
            guard keep > 0 && keep <= 1 else { throw UnreachableTarget(description: "a keep fraction of \(keep) must be in (0, 1]") }
            let isFlops: Bool = { if case .flops = options.target { return true }; return false }()
            func cost(_ s: Set<Int>) -> Double {
                let e = estimator.estimate(removing: s)
                return isFlops ? e.flops / estimator.base.flops : e.params / estimator.base.params
            }
            let most = candidate(1.0)
            let best = cost(most)
            guard best <= keep + 1e-9 else {
                let what = isFlops ? "FLOPs" : "parameters"
                throw UnreachableTarget(description: String(format: "cannot keep only %.3g of the %@: removing every prunable channel down to the minimum keeps %.3g", keep, what, best))
            }
            // Smallest removal that meets the target (cost falls as x grows).
            var lo = 0.0, hi = 1.0
            var chosen = most
            for _ in 0..<40 {
                let mid = (lo + hi) / 2
                let s = candidate(mid)
                if cost(s) <= keep { hi = mid; chosen = s } else { lo = mid }
            }
            if options.strategy == .uniform { chosen = topUp(chosen) { cost($0) <= keep } }
            return Allocation(removed: chosen)
        }
    }
}

/// Estimates FLOPs and parameters after removing channel classes, from the original per-node costs
/// scaled by the kept fraction of each node's input and output channels (exact for Conv, Gemm and
/// element-wise ops; the final numbers come from the cost model on the pruned graph).
public struct CostEstimator {
    public let base: (flops: Double, params: Double)
    private let terms: [(flops: Double, params: Double, input: [Int]?, output: [Int]?, scalesWithInput: Bool)]

    init(analysis: DependencyAnalysis, cost: CostReport) {
        let graph = analysis.model.graph
        var terms: [(Double, Double, [Int]?, [Int]?, Bool)] = []
        var byName: [String: NodeCost] = [:]
        for c in cost.nodes { byName[c.name] = c }
        for node in graph.nodes {
            guard let c = byName[node.label] else { continue }
            let input = node.input(0).flatMap { analysis.graph.layouts[$0] }.map { analysis.classIDs($0.atoms) }
            let output = node.outputs.first.flatMap { analysis.graph.layouts[$0] }.map { analysis.classIDs($0.atoms) }
            let producesChannels = ["Conv", "ConvTranspose", "Gemm", "MatMul"].contains(node.opType) && node.int("group", default: 1) == 1
            terms.append((Double(c.flops), Double(c.params), input, output, producesChannels))
        }
        self.terms = terms
        base = (Double(cost.totals.flops), Double(cost.totals.params))
    }

    public func estimate(removing removed: Set<Int>) -> (flops: Double, params: Double) {
        func kept(_ classes: [Int]?) -> Double {
            guard let classes, !classes.isEmpty else { return 1 }
            return Double(classes.reduce(0) { $0 + (removed.contains($1) ? 0 : 1) }) / Double(classes.count)
        }
        var flops = 0.0, params = 0.0
        for t in terms {
            let f = kept(t.output) * (t.scalesWithInput ? kept(t.input) : 1)
            flops += t.flops * f
            params += t.params * f
        }
        return (flops, params)
    }
}
