import Foundation

/// A labelled image dataset in memory: images as float32 NCHW, labels as class indices.
public struct Dataset: Sendable {
    public var images: [Float]
    public var labels: [Int32]
    /// Channels, height, width of one image.
    public var sampleShape: [Int]
    public var classes: Int

    public var count: Int { labels.count }
    public var sampleSize: Int { sampleShape.reduce(1, *) }

    public init(images: [Float], labels: [Int32], sampleShape: [Int], classes: Int) {
        self.images = images
        self.labels = labels
        self.sampleShape = sampleShape
        self.classes = classes
    }

    /// Reads an NPZ (arrays `x` and `y`, or the first two members) or an IDX image file whose label
    /// file sits beside it (`…-images-idx3-ubyte[.gz]` with `…-labels-idx1-ubyte[.gz]`).
    /// `channels` tells how to lay out NHW or NHWC data as the model's NCHW input. uint8 pixels
    /// are scaled to [0, 1].
    public static func load(_ path: String, channels: Int? = nil) throws -> Dataset {
        guard let raw = FileManager.default.contents(atPath: path) else { throw DataError(path, "cannot read the file") }
        let bytes = [UInt8](raw)
        var x: LoadedArray, y: LoadedArray
        if path.hasSuffix(".npz") {
            let members = try ZipArchive.members(of: bytes, path: path)
            let xName = members["x.npy"] != nil ? "x.npy" : members["images.npy"] != nil ? "images.npy" : nil
            let yName = members["y.npy"] != nil ? "y.npy" : members["labels.npy"] != nil ? "labels.npy" : nil
            guard let xName, let yName, let xData = members[xName], let yData = members[yName] else {
                throw DataError(path, "an NPZ dataset needs arrays 'x' and 'y' (found \(members.keys.sorted().joined(separator: ", ")))")
            }
            x = try NPY.parse(xData, path: path, member: xName)
            y = try NPY.parse(yData, path: path, member: yName)
        } else {
            x = try IDX.parse(path.hasSuffix(".gz") ? try Inflate.gzip(bytes, path: path) : bytes, path: path)
            guard path.contains("images-idx3") else { throw DataError(path, "an IDX dataset is named …-images-idx3-ubyte[.gz] with its …-labels-idx1-ubyte[.gz] beside it") }
            let labelPath = path.replacingOccurrences(of: "images-idx3", with: "labels-idx1")
            guard let lraw = FileManager.default.contents(atPath: labelPath) else { throw DataError(labelPath, "label file not found beside \(path)") }
            let lbytes = [UInt8](lraw)
            y = try IDX.parse(labelPath.hasSuffix(".gz") ? try Inflate.gzip(lbytes, path: labelPath) : lbytes, path: labelPath)
        }
        return try make(x: x, y: y, path: path, channels: channels)
    }

    static func make(x: LoadedArray, y: LoadedArray, path: String, channels: Int?) throws -> Dataset {
        guard case .integer(let labels) = y.values else { throw DataError(path, "labels must be integers, found \(y.dtype)") }
        guard y.shape.count == 1 else { throw DataError(path, "labels must be one-dimensional, found shape \(y.shape)") }
        guard let n = x.shape.first, n == labels.count else {
            throw DataError(path, "\(x.shape.first ?? 0) images but \(labels.count) labels")
        }
        guard let low = labels.min(), low >= 0 else { throw DataError(path, "labels out of range: found \(labels.min() ?? 0) (must be ≥ 0)") }
        var images = x.floats
        if case .integer = x.values { images = images.map { $0 / 255 } }
        var sample: [Int]
        switch x.shape.count {
        case 3: sample = [1, x.shape[1], x.shape[2]]
        case 4:
            if let c = channels, x.shape[3] == c, x.shape[1] != c {
                // NHWC -> NCHW
                let (h, w) = (x.shape[1], x.shape[2])
                var t = [Float](repeating: 0, count: images.count)
                for i in 0..<n { for yy in 0..<h { for xx in 0..<w { for ch in 0..<c {
                    t[((i * c + ch) * h + yy) * w + xx] = images[((i * h + yy) * w + xx) * c + ch]
                } } } }
                images = t
                sample = [c, h, w]
            } else {
                sample = Array(x.shape.dropFirst())
            }
        case 2: sample = [x.shape[1]]
        default: throw DataError(path, "images of shape \(x.shape) are not N×H×W, N×C×H×W, N×H×W×C or N×F")
        }
        if let c = channels, sample.count == 3, sample[0] != c {
            throw DataError(path, "images have \(sample[0]) channels but the model expects \(c)")
        }
        return Dataset(images: images, labels: labels.map { Int32($0) }, sampleShape: sample, classes: Int(labels.max() ?? 0) + 1)
    }

    /// Subtracts `mean` and divides by `std`, per channel (one value each, or one per channel).
    public mutating func normalise(mean: [Float], std: [Float]) {
        guard !mean.isEmpty, sampleShape.count == 3 else { return }
        let c = sampleShape[0], plane = sampleShape[1] * sampleShape[2]
        for i in 0..<count {
            for ch in 0..<c {
                let m = mean[mean.count == 1 ? 0 : ch], s = std[std.count == 1 ? 0 : ch]
                let base = (i * c + ch) * plane
                for k in 0..<plane { images[base + k] = (images[base + k] - m) / s }
            }
        }
    }
}
