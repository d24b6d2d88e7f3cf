/// Which axes of an activation carry channels, and which channel atom sits at each position.
///
/// Usually one axis (axis 1 of an NCHW tensor). Flatten turns C channels of H×W into C·H·W
/// features, each atom repeated H·W times; the channel-shuffle reshape splits one axis into two
/// (groups × channels per group), which a Transpose may swap and a later Reshape merges back.
struct ChannelLayout: Equatable {
    /// Tensor axes carrying channels, ascending (one or two).
    var axes: [Int]
    /// Size along each of `axes`.
    var sizes: [Int]
    /// Atom ids in row-major order over `sizes`.
    var atoms: [Int]

    init(axis: Int, atoms: [Int]) {
        self.axes = [axis]
        self.sizes = [atoms.count]
        self.atoms = atoms
    }

    init(axes: [Int], sizes: [Int], atoms: [Int]) {
        self.axes = axes
        self.sizes = sizes
        self.atoms = atoms
    }

    /// The single channel axis, when there is one.
    var axis: Int? { axes.count == 1 ? axes[0] : nil }

    /// The same layout with every axis moved by `shift`.
    func shifted(by shift: Int) -> ChannelLayout {
        ChannelLayout(axes: axes.map { $0 + shift }, sizes: sizes, atoms: atoms)
    }
}

/// A tensor (initializer) axis whose slices follow channel atoms: a weight, a bias, a
/// BatchNormalization parameter.
struct Member {
    /// What the member does, which decides how it is scored and masked.
    enum Role: String, Codable {
        /// Filters that create channels (Conv/Gemm output axis): scored by magnitude criteria.
        case producer
        /// Bias of a producer.
        case producerBias
        /// Input axis of a consuming Conv/Gemm: sliced, never scored or masked.
        case consumer
        /// BatchNormalization (or InstanceNormalization) scale.
        case bnScale
        /// BatchNormalization shift, or a per-channel additive constant.
        case shift
        /// BatchNormalization running mean or variance: sliced, never masked.
        case statistic
        /// A per-channel multiplicative constant or PRelu slope.
        case scale
        /// A per-channel divisor or exponent: sliced, never masked (zero would be undefined).
        case divisor
    }

    var tensor: String
    var axis: Int
    var atoms: [Int]
    var role: Role
    var node: String
}

/// A node attribute or shape constant that must be recomputed after channels are removed.
enum ParameterUpdate {
    /// Depthwise Conv: `group` becomes the number of kept channels of this layout.
    case depthwiseGroup(node: Int, layout: ChannelLayout)
    /// Split along channels: sizes become the kept counts of each output.
    case split(node: Int, outputs: [ChannelLayout])
    /// Slice along channels: starts/ends become positions in the kept input.
    case slice(node: Int, input: ChannelLayout, start: Int, end: Int, axis: Int)
    /// Reshape: target sizes along the output layout axes become the kept sizes.
    case reshape(node: Int, output: ChannelLayout)
}
