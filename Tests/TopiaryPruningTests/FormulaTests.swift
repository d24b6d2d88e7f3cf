import Testing
@testable import TopiaryPruning

@Suite struct FormulaTests {
    @Test func precedenceAndFunctions() throws {
        let f = try Formula.parse("l2 * abs(bn_gamma) + 2 ^ 3 - max(1, mean) / -2")
        #expect(f.uses == ["l2", "bn_gamma", "mean"])
        #expect(f.evaluate(["l2": 2, "bn_gamma": -3, "mean": 4]) == 2 * 3 + 8 - 4 / -2)
    }

    @Test(arguments: [
        ("l2 +", 5, "expected a number"),
        ("l2 * (bn_gamma", 15, "expected ')'"),
        ("weight", 1, "unknown variable 'weight'"),
        ("abss(l1)", 1, "unknown function 'abss'"),
        ("min(l1)", 1, "takes 2 argument(s)"),
        ("l1 $ 2", 4, "unexpected '$'"),
    ])
    func errorsCarryTheColumn(_ text: String, _ column: Int, _ message: String) {
        #expect {
            _ = try Formula.parse(text)
        } throws: { e in
            guard let e = e as? FormulaError else { return false }
            return e.column == column && e.message.contains(message)
        }
    }

    @Test func formulaNeedingDataSaysSo() throws {
        let c = try Criteria.parse("expr: taylor * l2")
        #expect(c.requirements.contains(.gradients))
        #expect(try Criteria.parse("expr: l1").requirements.isEmpty)
    }
}
