#if canImport(Glibc)
import Glibc
#endif

/// A file mapped read-only into memory for the time it takes to decode it (no copy of its bytes).
final class MappedFile {
    let bytes: UnsafeRawBufferPointer
    private let mapped: UnsafeMutableRawPointer?

    init(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw IRError.io("cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw IRError.io("cannot stat: \(String(cString: strerror(errno)))") }
        guard (st.st_mode & S_IFMT) == S_IFREG else { throw IRError.io("not a regular file") }
        let size = Int(st.st_size)
        guard size > 0 else {
            mapped = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        let p = mmap(nil, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0)
        guard let p, p != MAP_FAILED else { throw IRError.io("cannot map the file: \(String(cString: strerror(errno)))") }
        mapped = p
        bytes = UnsafeRawBufferPointer(start: p, count: size)
    }

    deinit {
        if let mapped { munmap(mapped, bytes.count) }
    }
}
