import Testing
import TopiaryIR
import TopiaryTestSupport

@Suite struct TensorEncodingTests {
    /// A one-initializer model holding `tensor`.
    func model(with tensor: Tensor) -> Model {
        GraphBuilder.model([GraphBuilder.node("Identity", [tensor.name], ["y"])], inputs: [], outputs: ["y"], initializers: [tensor])
    }

    @Test(arguments: [DataType.int8, .uint8, .int16, .uint16, .int32, .int64, .uint32, .uint64, .bool, .float16, .bfloat16, .double, .float])
    func typedFieldsRoundTrip(type: DataType) throws {
        let bytes = (0..<(4 * type.bitWidth / 8)).map { UInt8(truncatingIfNeeded: $0 &* 37 &+ 200) }
        var values = bytes
        if type == .bool { values = bytes.map { $0 & 1 } }
        var t = Tensor(name: "t", dataType: type, dims: [4], buffer: TensorBuffer(copying: values))
        t.encoding = .typed
        let back = try assertRoundTrips(model(with: t))
        let u = try #require(back.graph.initializer(named: "t"))
        #expect(u.encoding == .typed)
        #expect(u.hasSameValue(as: t))
    }

    @Test func rawDataAndStringsRoundTrip() throws {
        let back = try assertRoundTrips(model(with: Tensor(name: "t", floats: [1, -2.5, .infinity], dims: [3])))
        #expect(back.graph.initializer(named: "t")?.floatValues() == [1, -2.5, .infinity])
        let s = try assertRoundTrips(model(with: Tensor(name: "t", strings: [Array("a".utf8), []], dims: [2])))
        #expect(s.graph.initializer(named: "t")?.strings == [Array("a".utf8), []])
    }

    @Test func declaredSizeLargerThanDataIsRefused() throws {
        let lying = Tensor(name: "w", dataType: .float, dims: [100], buffer: TensorBuffer(copying: [Float(1)]))
        let bytes = try ModelFile.encode(model(with: lying))
        #expect {
            try bytes.withUnsafeBytes { try ModelFile.decode($0) }
        } throws: { error in
            "\(error)".contains("'w'") && "\(error)".contains("400 bytes") && "\(error)".contains("4 bytes")
        }
    }

    @Test func randomBytesAreNotAModel() {
        let junk: [UInt8] = [0xff, 0xff, 0xff, 0x13, 0x00, 0x42]
        #expect(throws: IRError.self) { try junk.withUnsafeBytes { try ModelFile.decode($0) } }
    }

    @Test func float16ValuesConvert() {
        let t = Tensor(name: "h", dataType: .float16, dims: [2], buffer: TensorBuffer(copying: [Float16(1.5).bitPattern, Float16(-2).bitPattern]))
        #expect(t.floatValues() == [1.5, -2])
    }
}
