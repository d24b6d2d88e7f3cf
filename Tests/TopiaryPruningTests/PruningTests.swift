import Testing
import TopiaryIR
@testable import TopiaryPruning
import TopiaryTestSupport

@Suite struct PruningTests {
    typealias B = GraphBuilder

    /// x -> conv a (4) -> Add(conv b (4)) -> conv c (2, graph output).
    func residualModel() -> Model {
        func w(_ name: String, _ dims: [Int], _ scale: Float) -> Tensor {
            Tensor(name: name, floats: (0..<dims.reduce(1, *)).map { Float($0 % 7) * scale - 1 }, dims: dims)
        }
        let nodes = [
            B.node("Conv", ["x", "wa"], ["a"]),
            B.node("Conv", ["x", "wb"], ["b"]),
            B.node("Add", ["a", "b"], ["s"]),
            B.node("Conv", ["s", "wc"], ["y"]),
        ]
        return B.model(nodes, inputs: [B.value("x", [1, 3, 4, 4])], outputs: ["y"],
                       initializers: [w("wa", [4, 3, 1, 1], 0.5), w("wb", [4, 3, 1, 1], 0.25), w("wc", [2, 4, 1, 1], 1)])
    }

    @Test func residualBranchesShareOneGroup() throws {
        let analysis = try DependencyAnalysis(model: residualModel())
        let prunable = analysis.groups.filter(\.isPrunable)
        #expect(prunable.count == 1)
        #expect(prunable[0].width == 4)
        #expect(Set(prunable[0].members) == ["wa:0", "wb:0", "wc:1"])
        let pinned = analysis.groups.filter { !$0.isPrunable }
        #expect(pinned.flatMap(\.pinReasons).contains("graph output 'y'"))
        #expect(pinned.flatMap(\.pinReasons).contains("graph input 'x'"))
    }

    @Test func pruningSlicesEveryMember() throws {
        let model = residualModel()
        let options = PruningOptions(criterion: MagnitudeImportance(norm: 1), allocation: AllocationOptions(target: .ratio(0.5)))
        let result = try Pruner.prune(model, options: options, writeMasked: true)
        #expect(model.graph.initializer(named: "wa")?.dims == [2, 3, 1, 1])
        #expect(model.graph.initializer(named: "wb")?.dims == [2, 3, 1, 1])
        #expect(model.graph.initializer(named: "wc")?.dims == [2, 2, 1, 1])
        #expect(result.after.macs * 2 == result.before.macs)
        // The masked twin keeps shapes and zeroes the same two filters in both branches.
        let masked = try #require(result.masked)
        let wa = try #require(masked.graph.initializer(named: "wa")?.floatValues())
        #expect(wa.count == 12)
        #expect(wa.filter { $0 == 0 }.count >= 6)
    }

    @Test func sameSeedSameRandomScores() throws {
        let analysis = try DependencyAnalysis(model: residualModel())
        let a = try RandomImportance(seed: 3).scores(analysis, calibration: nil)
        let b = try RandomImportance(seed: 3).scores(analysis, calibration: nil)
        let c = try RandomImportance(seed: 4).scores(analysis, calibration: nil)
        #expect(a == b)
        #expect(a != c)
    }

    @Test func sliceKeepsChosenPositions() throws {
        let t = Tensor(name: "t", floats: (0..<12).map(Float.init), dims: [3, 4])
        let s = try Surgery.slice(t, axis: 1, keep: [0, 3])
        #expect(s.dims == [3, 2])
        #expect(s.floatValues() == [0, 3, 4, 7, 8, 11])
    }

    /// In-place slicing (a buffer nothing else holds) must equal slicing into new memory, for every
    /// run length the copy loop special-cases (4 bytes, short word runs, long runs) and for cuts
    /// on one or two axes; the source of the copy must be untouched.
    @Test(arguments: [([6, 5, 3, 3], [0: [0, 2, 5]]), ([6, 5, 1, 1], [0: [1, 4, 5], 1: [0, 3]]), ([4, 100], [0: [1, 3]]),
                      ([8, 3, 2], [1: [2]]), ([5, 7], [1: [0, 1, 2, 6]]), ([3, 4, 5, 6], [0: [0, 2], 2: [1, 4]])])
    func sliceInPlaceEqualsCopy(dims: [Int], cuts: [Int: [Int]]) throws {
        let values = (0..<dims.reduce(1, *)).map { Float($0) * 0.5 - 3 }
        let original = Tensor(name: "w", floats: values, dims: dims)
        let copied = try Surgery.slice(original, keep: cuts)
        var own = Tensor(name: "w", floats: values, dims: dims)
        let unique = own.hasUniqueBuffer()
        #expect(unique)
        try Surgery.sliceInPlace(&own, keep: cuts)
        #expect(own.dims == copied.dims)
        #expect(own.buffer.count == copied.buffer.count)
        #expect(own.floatValues() == copied.floatValues())
        #expect(original.floatValues() == values)
    }

    /// Weights moved in the background while the graph is rewritten end up holding what slicing
    /// them on the spot gives: a 2.4 MB 3×3 convolution cut on both axes, a 1×1 one, biases.
    @Test func backgroundMovesEqualSlicingOnTheSpot() throws {
        func model() -> Model {
            func w(_ name: String, _ dims: [Int], _ seed: UInt64) -> Tensor {
                var r = SplitMix(seed: seed)
                return Tensor(name: name, floats: (0..<dims.reduce(1, *)).map { _ in Float(r.nextUnit()) - 0.5 }, dims: dims)
            }
            let nodes = [
                B.node("Conv", ["x", "wa", "ba"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["a"], ["ra"]),
                B.node("Conv", ["ra", "wb"], ["b"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["b"], ["rb"]),
                B.node("Conv", ["rb", "wc"], ["c"]), B.node("Relu", ["c"], ["rc"]),
                B.node("Conv", ["rc", "wd"], ["y"]),
            ]
            return B.model(nodes, inputs: [B.value("x", [1, 3, 8, 8])], outputs: ["y"],
                           initializers: [w("wa", [256, 3, 3, 3], 1), w("ba", [256], 2), w("wb", [256, 256, 3, 3], 3),
                                          w("wc", [300, 256, 1, 1], 4), w("wd", [4, 300, 1, 1], 5)])
        }
        func pruned(backgroundBytes: Int) throws -> [String: (dims: [Int], values: [Float])] {
            let m = model()
            try Pruner.prepare(m)
            let analysis = try DependencyAnalysis(model: m)
            let scores = try MagnitudeImportance(norm: 2).scores(analysis, calibration: nil)
            let allocation = try Allocation.allocate(analysis, scores: scores, options: AllocationOptions(target: .ratio(0.5))) {
                CostEstimator(analysis: analysis, cost: try! CostModel.analyse(m).0)
            }
            let outcome = try Surgery.apply(analysis, removing: allocation.removed, backgroundBytes: backgroundBytes)
            outcome.finish()
            var out: [String: (dims: [Int], values: [Float])] = [:]
            for t in m.graph.initializers { out[t.name] = (t.dims, t.floatValues() ?? []) }
            return out
        }
        let moved = try pruned(backgroundBytes: 0), onTheSpot = try pruned(backgroundBytes: .max)
        #expect(moved["wb"]?.dims == [128, 128, 3, 3])
        #expect(moved["wc"]?.dims == [150, 128, 1, 1])
        #expect(Set(moved.keys) == Set(onTheSpot.keys))
        for (name, t) in onTheSpot {
            #expect(moved[name]?.dims == t.dims, "\(name)")
            #expect(moved[name]?.values == t.values, "\(name)")
        }
    }

    /// A weight whose buffer another value shares is copied, never cut in place: the other value
    /// keeps its contents.
    @Test func sharedWeightsAreNotCutInPlace() throws {
        let model = residualModel()
        let keep = try #require(model.graph.initializer(named: "wa"))
        let before = try #require(keep.floatValues())
        let options = PruningOptions(criterion: MagnitudeImportance(norm: 1), allocation: AllocationOptions(target: .ratio(0.5)))
        _ = try Pruner.prune(model, options: options)
        #expect(model.graph.initializer(named: "wa")?.dims == [2, 3, 1, 1])
        #expect(keep.dims == [4, 3, 1, 1])
        #expect(keep.buffer.count == 48)
        #expect(keep.floatValues() == before)
    }

    /// Scores on one scale: 1 for every channel, 0.9 for those of the group conv b makes.
    struct Flat: Importance {
        var name: String { "flat" }
        var comparableAcrossLayers: Bool { true }
        func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
            var s = Array(repeating: 1.0, count: analysis.classes.count)
            for g in analysis.groups where g.producers == ["b (Conv)"] { for c in g.classes { s[c] = 0.9 } }
            return s
        }
    }

    /// x → conv a (8, 3×3 over 8×8) → pool 4 → conv b (8, 1×1 over 2×2) → conv c (2, graph output).
    func twoGroupModel() -> Model {
        func w(_ name: String, _ dims: [Int]) -> Tensor { Tensor(name: name, floats: (0..<dims.reduce(1, *)).map { Float($0 % 5) - 2 }, dims: dims) }
        let nodes = [
            B.node("Conv", ["x", "wa"], ["a"], ints: ["pads": [1, 1, 1, 1]]), B.node("Relu", ["a"], ["ra"]),
            B.node("MaxPool", ["ra"], ["pa"], ints: ["kernel_shape": [4, 4], "strides": [4, 4]]),
            B.node("Conv", ["pa", "wb"], ["b"]), B.node("Relu", ["b"], ["rb"]),
            B.node("Conv", ["rb", "wc"], ["y"]),
        ]
        return B.model(nodes, inputs: [B.value("x", [1, 3, 8, 8])], outputs: ["y"],
                       initializers: [w("wa", [8, 3, 3, 3]), w("wb", [8, 8, 1, 1]), w("wc", [2, 8, 1, 1])])
    }

    /// global_cost ranks by score per FLOP saved: it takes channels from the group whose channels
    /// cost most (a 3×3 conv over 8×8 against a 1×1 conv over 2×2) although they score a little
    /// higher, and meets the target; plain global takes the lower-scored group's first.
    @Test func globalCostTakesTheCostlyChannelsFirst() throws {
        let model = twoGroupModel
        var options = PruningOptions(criterion: Flat(), allocation: AllocationOptions(target: .flops(0.7), strategy: .globalCost))
        let result = try Pruner.prune(model(), options: options)
        let a = try #require(result.widths.first { $0.producers == ["a (Conv)"] })
        let b = try #require(result.widths.first { $0.producers == ["b (Conv)"] })
        #expect(a.after < a.before)
        #expect(b.after == b.before)
        #expect(Double(result.after.flops) <= 0.7 * Double(result.before.flops))
        options.allocation.strategy = .global
        let plain = try Pruner.prune(model(), options: options)
        #expect(Double(plain.after.flops) <= 0.7 * Double(plain.before.flops))
        let plainB = try #require(plain.widths.first { $0.producers == ["b (Conv)"] })
        #expect(plainB.after < plainB.before)
    }

    /// Scores by position in the group: conv a's channels 10, 3, 3, …; conv b's 1, 2, 2, ….
    struct Skewed: Importance {
        var name: String { "skewed" }
        func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
            var s = Array(repeating: 0.0, count: analysis.classes.count)
            for g in analysis.groups {
                for (i, c) in g.classes.enumerated() { s[c] = g.producers == ["a (Conv)"] ? (i == 0 ? 10 : 3) : (i == 0 ? 1 : 2) }
            }
            return s
        }
    }

    /// A global ranking divides each group's scores by their max (a's 3s become 0.3, below b's
    /// 1 → 0.5: a loses the channel) or by their mean (a's 3s become 0.77, b's 1 becomes 0.53:
    /// b loses it).
    @Test func globalNormalisationByMaxOrMean() throws {
        var options = PruningOptions(criterion: Skewed(), allocation: AllocationOptions(target: .ratio(1.0 / 16), strategy: .global))
        func widths() throws -> (a: Int, b: Int) {
            let result = try Pruner.prune(twoGroupModel(), options: options)
            let a = try #require(result.widths.first { $0.producers == ["a (Conv)"] })
            let b = try #require(result.widths.first { $0.producers == ["b (Conv)"] })
            return (a.after, b.after)
        }
        #expect(try widths() == (7, 8))
        options.allocation.normalisation = .mean
        #expect(try widths() == (8, 7))
    }

    /// After an earlier round: b's first six channels are masked (they score 0), a scores
    /// [10, 3, …], b's other two 1 and 2.
    struct AfterARound: Importance {
        var name: String { "after-a-round" }
        func scores(_ analysis: DependencyAnalysis, calibration: CalibrationData?) throws -> [Double] {
            var s = Array(repeating: 0.0, count: analysis.classes.count)
            for g in analysis.groups {
                for (i, c) in g.classes.enumerated() { s[c] = g.producers == ["a (Conv)"] ? (i == 0 ? 10 : 3) : [0, 0, 0, 0, 0, 0, 1, 2][i] }
            }
            return s
        }
    }

    /// Pinned channels are removed whatever their scores and stay out of their group's
    /// normaliser. Seven of sixteen go: b's six pinned ones, then by mean normalisation over the
    /// live channels b's 1 (1/1.5 = 0.67) before a's 3s (3/3.875 = 0.77); were the pinned zeros
    /// counted in b's mean (0.375), b's 1 would score 2.67 and a would lose a channel. Pinning a's
    /// best channel removes it.
    @Test func pinnedChannelsGoFirstAndLeaveTheNormaliser() throws {
        var options = PruningOptions(criterion: AfterARound(), allocation: AllocationOptions(target: .ratio(7.0 / 16), strategy: .global))
        options.allocation.normalisation = .mean
        options.pinned = ["wb": [0, 1, 2, 3, 4, 5]]
        func widths(_ r: PruningResult) -> [Int] { ["a (Conv)", "b (Conv)"].compactMap { p in r.widths.first { $0.producers == [p] }?.after } }
        let result = try Pruner.prune(twoGroupModel(), options: options)
        #expect(widths(result) == [8, 1])
        options.pinned = ["wa": [0]]
        options.allocation.target = .ratio(1.0 / 16)
        let model = twoGroupModel()
        let wa = try #require(model.graph.initializers.first { $0.name == "wa" }?.floatValues())
        let pruned = try Pruner.prune(model, options: options)
        #expect(widths(pruned) == [7, 8])
        #expect(model.graph.initializers.first { $0.name == "wa" }?.floatValues() == Array(wa[27...]))
    }

    /// Uniform allocation under a FLOPs target: one ratio for both groups, rounded, then what the
    /// rounding left of the budget given back while the target holds. At every target the result
    /// meets it and is full: giving either group one more channel would break it. Without the
    /// give-back both groups always keep the same width and some targets leave a channel's worth
    /// of budget unspent.
    @Test func uniformUnderACostTargetSpendsTheBudget() throws {
        let model = twoGroupModel()
        let shapes = try ShapeInference.run(model)
        let cost = try CostModel.analyse(model.graph, shapes: shapes)
        let analysis = try DependencyAnalysis(model: model, shapes: shapes)
        let estimator = CostEstimator(analysis: analysis, cost: cost)
        let groups = analysis.groups.filter(\.isPrunable)
        #expect(groups.count == 2)
        let scores = try MagnitudeImportance(norm: 2).scores(analysis, calibration: nil)
        var uneven = 0
        for target in stride(from: 0.2, through: 0.95, by: 0.05) {
            let options = AllocationOptions(target: .flops(target), strategy: .uniform)
            let removed = try Allocation.allocate(analysis, scores: scores, options: options, makeEstimator: { estimator }).removed
            #expect(estimator.estimate(removing: removed).flops <= target * estimator.base.flops + 1e-9)
            let kept = groups.map { g in g.classes.filter { !removed.contains($0) }.count }
            if kept[0] != kept[1] { uneven += 1 }
            for g in groups {
                let gone = g.classes.filter { removed.contains($0) }
                guard let back = gone.first else { continue }
                // Whichever removed channel comes back, the cost is the same.
                let more = estimator.estimate(removing: removed.subtracting([back])).flops
                #expect(more > target * estimator.base.flops, "target \(target): group \(g.producers) could keep one more channel")
            }
        }
        #expect(uneven > 0)
    }

    /// x → conv a (3 channels, 1×1) → BatchNormalization → Relu → conv c (2, graph output). Channel
    /// 0 has the smallest filter but the largest outgoing weights, channel 1 the reverse.
    func producerConsumerModel() -> Model {
        let nodes = [
            B.node("Conv", ["x", "wa"], ["a"]),
            B.node("BatchNormalization", ["a", "g", "bt", "mu", "var"], ["n"]),
            B.node("Relu", ["n"], ["r"]),
            B.node("Conv", ["r", "wc"], ["y"]),
        ]
        return B.model(nodes, inputs: [B.value("x", [1, 2, 4, 4])], outputs: ["y"], initializers: [
            Tensor(name: "wa", floats: [1, 1, 2, 2, 3, 3], dims: [3, 2, 1, 1]),
            Tensor(name: "g", floats: [1, 0.5, 2], dims: [3]), Tensor(name: "bt", floats: [0.1, 0.2, 0.3], dims: [3]),
            Tensor(name: "mu", floats: [0, 0, 0], dims: [3]), Tensor(name: "var", floats: [1, 1, 1], dims: [3]),
            Tensor(name: "wc", floats: [5, 0.1, 1, -5, 0.1, -1], dims: [2, 3, 1, 1]),
        ])
    }

    /// group_l2 sums the squares of everything removal deletes — filter, BatchNorm scale, the
    /// consumer's input slice — without normalising per member: 2 + 1 + 50, 8 + 0.25 + 0.02,
    /// 18 + 4 + 2. So it removes channel 1 where the filter norm (`l2`) removes channel 0.
    @Test func groupMagnitudeCountsTheOutgoingWeights() throws {
        let analysis = try DependencyAnalysis(model: producerConsumerModel())
        let group = try #require(analysis.groups.first { $0.isPrunable })
        let scores = try GroupMagnitudeImportance().scores(analysis, calibration: nil)
        let expected = [53.0, 8.27, 24.0]
        for (c, e) in zip(group.classes, expected) { #expect(abs(scores[c] - e) < 1e-5, "channel score \(scores[c]), expected \(e)") }
        func removed(_ criterion: any Importance) throws -> [Float] {
            let model = producerConsumerModel()
            _ = try Pruner.prune(model, options: PruningOptions(criterion: criterion, allocation: AllocationOptions(target: .ratio(1.0 / 3))))
            return try #require(model.graph.initializer(named: "wa")?.floatValues())
        }
        #expect(try removed(GroupMagnitudeImportance()) == [1, 1, 3, 3])
        #expect(try removed(MagnitudeImportance(norm: 2)) == [2, 2, 3, 3])
        #expect(Criteria.named("group_l2") is GroupMagnitudeImportance)
    }

    /// max_group_ratio bounds what any group loses, whatever the ranking wants.
    @Test func maxGroupRatioBoundsEveryGroup() throws {
        var options = PruningOptions(criterion: Flat(), allocation: AllocationOptions(target: .ratio(0.6), strategy: .global))
        options.allocation.maxGroupRatio = 0.5
        let result = try Pruner.prune(twoGroupModel(), options: options)
        for w in result.widths { #expect(w.after * 2 >= w.before, "\(w.producers): \(w.before) -> \(w.after)") }
        var unbounded = options
        unbounded.allocation.maxGroupRatio = 1
        let free = try Pruner.prune(twoGroupModel(), options: unbounded)
        #expect(free.widths.contains { $0.after * 2 < $0.before })
    }

    /// The ranking's own quicksort and selection agree with the standard library's sort by
    /// (score, id), with many tied scores, at every size up to 200 and every selection count.
    @Test func rankingSortAndSelectionMatchTheStandardSort() {
        var rng = SplitMix(seed: 7)
        for n in [0, 1, 2, 3, 15, 16, 17, 40, 200] {
            let keys = (0..<n).map { RankKey(score: Double(rng.below(n / 3 + 1)), id: Int(rng.below(1000)) * 1000 + $0) }
            let expected = keys.sorted { ($0.score, $0.id) < ($1.score, $1.id) }.map(\.id)
            var sorted = keys
            sorted.withUnsafeMutableBufferPointer { RankKey.sort($0) }
            #expect(sorted.map(\.id) == expected, "n = \(n)")
            for count in 0...n {
                var selected = keys
                selected.withUnsafeMutableBufferPointer { RankKey.select($0, count: count) }
                #expect(Set(selected.prefix(count).map(\.id)) == Set(expected.prefix(count)), "n = \(n), count = \(count)")
            }
        }
    }

    @Test func unreachableTargetSaysHowClose() throws {
        let options = PruningOptions(criterion: MagnitudeImportance(norm: 2), allocation: AllocationOptions(target: .flops(0.01)))
        #expect(throws: UnreachableTarget.self) { try Pruner.prune(residualModel(), options: options) }
    }
}
