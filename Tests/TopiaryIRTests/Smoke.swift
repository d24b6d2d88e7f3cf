import Testing
@testable import TopiaryIR
@Test func smoke() { #expect(DataType.float.bitWidth == 32) }
