/// Positions along one axis of a named tensor that are held at zero (masked channels: a
/// pruning round zeroes them, the training engine keeps them at zero).
public struct ZeroSlices: Sendable, Equatable {
    public var tensor: String
    public var dims: [Int]
    public var axis: Int
    public var positions: [Int]

    public init(tensor: String, dims: [Int], axis: Int, positions: [Int]) {
        (self.tensor, self.dims, self.axis, self.positions) = (tensor, dims, axis, positions)
    }
}
