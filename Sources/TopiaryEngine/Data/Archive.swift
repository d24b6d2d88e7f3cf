import CZlib
import Foundation

/// Why a dataset file could not be read.
public struct DataError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String

    public init(_ path: String, _ reason: String) {
        self.path = path
        self.reason = reason
    }

    public var description: String { "\(path): \(reason)" }
}

/// Members of a zip archive (NPZ files are zips of .npy arrays), stored or deflated.
enum ZipArchive {
    static func members(of data: [UInt8], path: String) throws -> [String: [UInt8]] {
        func u16(_ o: Int) -> Int { Int(data[o]) | Int(data[o + 1]) << 8 }
        func u32(_ o: Int) -> Int { u16(o) | u16(o + 2) << 16 }
        // The end-of-central-directory record sits in the last 64 KiB + 22 bytes.
        guard data.count >= 22 else { throw DataError(path, "too short to be a zip/NPZ archive") }
        var eocd = -1
        var i = data.count - 22
        while i >= max(0, data.count - 65_557) {
            if u32(i) == 0x0605_4b50 { eocd = i; break }
            i -= 1
        }
        guard eocd >= 0 else { throw DataError(path, "not a zip/NPZ archive (no end of central directory)") }
        let entries = u16(eocd + 10)
        var p = u32(eocd + 16)
        var out: [String: [UInt8]] = [:]
        for _ in 0..<entries {
            guard p + 46 <= data.count, u32(p) == 0x0201_4b50 else { throw DataError(path, "corrupt zip central directory") }
            let method = u16(p + 10)
            let compressed = u32(p + 20), size = u32(p + 24)
            let nameLength = u16(p + 28), extra = u16(p + 30), comment = u16(p + 32)
            let local = u32(p + 42)
            guard p + 46 + nameLength <= data.count else { throw DataError(path, "corrupt zip entry name") }
            let name = String(decoding: data[(p + 46)..<(p + 46 + nameLength)], as: UTF8.self)
            p += 46 + nameLength + extra + comment
            guard compressed != 0xFFFF_FFFF, size != 0xFFFF_FFFF else { throw DataError(path, "zip64 members are not supported") }
            guard local + 30 <= data.count, u32(local) == 0x0403_4b50 else { throw DataError(path, "corrupt zip local header for '\(name)'") }
            let start = local + 30 + u16(local + 26) + u16(local + 28)
            guard start + compressed <= data.count else { throw DataError(path, "member '\(name)' runs past the end of the file") }
            let raw = Array(data[start..<(start + compressed)])
            switch method {
            case 0: out[name] = raw
            case 8: out[name] = try Inflate.raw(raw, expected: size, path: path)
            default: throw DataError(path, "member '\(name)' uses compression method \(method); only stored and deflated are supported")
            }
        }
        return out
    }
}

/// zlib inflation: raw deflate streams (zip) and gzip files.
enum Inflate {
    static func raw(_ input: [UInt8], expected: Int, path: String) throws -> [UInt8] {
        try run(input, windowBits: -15, sizeHint: expected, path: path)
    }

    static func gzip(_ input: [UInt8], path: String) throws -> [UInt8] {
        try run(input, windowBits: 15 + 16, sizeHint: input.count * 4, path: path)
    }

    private static func run(_ input: [UInt8], windowBits: Int32, sizeHint: Int, path: String) throws -> [UInt8] {
        var stream = z_stream()
        guard inflateInit2_(&stream, windowBits, ZLIB_VERSION, Int32(MemoryLayout<z_stream>.size)) == Z_OK else { throw DataError(path, "zlib init failed") }
        defer { inflateEnd(&stream) }
        var output = [UInt8](repeating: 0, count: max(sizeHint, 1024))
        var produced = 0
        var input = input
        let status: Int32 = input.withUnsafeMutableBufferPointer { inBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            while true {
                if produced == output.count { output.append(contentsOf: [UInt8](repeating: 0, count: output.count)) }
                let r: Int32 = output.withUnsafeMutableBufferPointer { outBuf in
                    stream.next_out = outBuf.baseAddress! + produced
                    stream.avail_out = uInt(outBuf.count - produced)
                    let r = inflate(&stream, Z_NO_FLUSH)
                    produced = outBuf.count - Int(stream.avail_out)
                    return r
                }
                if r == Z_STREAM_END { return Z_OK }
                if r != Z_OK && r != Z_BUF_ERROR { return r }
                if r == Z_BUF_ERROR && stream.avail_in == 0 { return Z_DATA_ERROR }
            }
        }
        guard status == Z_OK else { throw DataError(path, "compressed data is corrupt or truncated (zlib error \(status))") }
        return Array(output[0..<produced])
    }
}
