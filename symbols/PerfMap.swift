import SprofBase
import SprofELF
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// JIT symbols from a perf map file, `/tmp/perf-PID.map`. Code a JIT made at
/// run time lives in anonymous memory that no ELF file describes, so the JIT
/// writes its own symbol table; perf's
/// tools/perf/Documentation/jit-interface.txt defines the format:
///
///     START SIZE symbolname
///
/// one line per symbol, START and SIZE hex without a `0x` prefix, and the
/// name the rest of the line (it may contain spaces). Node writes it with
/// `--perf-basic-prof`, CPython 3.12+ with `-X perf` (a line per Python
/// function: `7f0e3830d7b1 b py::name:/path/script.py`, an 11-byte trampoline),
/// JVMs through an agent (perf-map-agent).
///
/// The file is read when a profile is symbolized, not when it is recorded:
/// JITs append to it for as long as they run, so a later read knows more code.
/// Node, CPython and the JVM agents leave it in `/tmp` when the process exits,
/// which is what lets a profile of an exited process be symbolized.
///
/// Parsing is tolerant, as perf's own reader (`dso__load_perf_map` in
/// tools/perf/util/symbol.c) is: a line that is not `START SIZE name` is
/// skipped and counted in ``skippedLines``. JITs reuse freed code memory, so
/// lines may overlap; a later line is newer, and wins for its range (what is
/// left of an older symbol outside that range keeps the older name).
public struct PerfMap: Sendable {
    /// One line of the file: `name`'s code is `[start, start + size)`.
    public struct Symbol: Hashable, Sendable {
        public var start: ProcessAddress
        public var size: UInt64
        public var name: String
        public init(start: ProcessAddress, size: UInt64, name: String) {
            self.start = start; self.size = size; self.name = name
        }
        /// One past the last byte.
        public var end: ProcessAddress { ProcessAddress(start.rawValue &+ size) }
    }

    /// The symbols that still own an address once overlaps are resolved,
    /// sorted by start, each with the range its line states (a newer line
    /// may own part of it; ``lookup(_:)`` knows which).
    public let symbols: [Symbol]

    /// Lines that were not `START SIZE name`: a field that is not hex (or does
    /// not fit 64 bits), a missing name, an end `START + SIZE` that does not
    /// fit 64 bits. Blank lines are not counted; lines with size 0 are well
    /// formed but name no address.
    public let skippedLines: Int

    /// `[lo, hi)` owned by `symbols[owner]`: sorted, disjoint, adjacent
    /// ranges of one owner merged.
    private struct OwnedRange: Sendable {
        var lo: UInt64
        var hi: UInt64
        var owner: Int
    }
    private let ranges: [OwnedRange]

    /// Parses the text of a perf map file.
    public init(text: String) {
        var text = text
        self = text.withUTF8 { PerfMap(utf8: $0) }
    }

    init(utf8 bytes: UnsafeBufferPointer<UInt8>) {
        var lines: [Symbol] = []
        var skipped = 0
        var lineStart = 0
        while lineStart < bytes.count {
            var lineEnd = lineStart
            while lineEnd < bytes.count && bytes[lineEnd] != UInt8(ascii: "\n") { lineEnd += 1 }
            var end = lineEnd
            if end > lineStart && bytes[end - 1] == UInt8(ascii: "\r") { end -= 1 }
            if end > lineStart {
                if let s = Self.parseLine(UnsafeBufferPointer(rebasing: bytes[lineStart..<end])) {
                    if s.size > 0 { lines.append(s) }
                } else {
                    skipped += 1
                }
            }
            lineStart = lineEnd + 1
        }
        skippedLines = skipped
        (symbols, ranges) = Self.resolve(lines)
    }

    /// `START SIZE name`: two hex fields (a `0x` prefix is tolerated, though
    /// perf itself would misread it), each followed by spaces or tabs, then
    /// the name, which runs to the end of the line.
    private static func parseLine(_ line: UnsafeBufferPointer<UInt8>) -> Symbol? {
        var i = 0
        func blank(_ c: UInt8) -> Bool { c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") }
        func hex() -> UInt64? {
            if i + 1 < line.count && line[i] == UInt8(ascii: "0") && (line[i + 1] | 0x20) == UInt8(ascii: "x") { i += 2 }
            var value: UInt64 = 0
            var digits = 0
            while i < line.count && !blank(line[i]) {
                let c = line[i]
                let d: UInt8
                switch c {
                case UInt8(ascii: "0")...UInt8(ascii: "9"): d = c - UInt8(ascii: "0")
                case UInt8(ascii: "a")...UInt8(ascii: "f"): d = c - UInt8(ascii: "a") + 10
                case UInt8(ascii: "A")...UInt8(ascii: "F"): d = c - UInt8(ascii: "A") + 10
                default: return nil
                }
                // Leading zeros are fine; more than 16 significant digits do not fit.
                guard value >> 60 == 0 else { return nil }
                value = value << 4 | UInt64(d)
                digits += 1
                i += 1
            }
            guard digits > 0, i < line.count else { return nil }
            while i < line.count && blank(line[i]) { i += 1 }
            return value
        }
        guard let start = hex(), let size = hex(), i < line.count else { return nil }
        guard start.addingReportingOverflow(size).overflow == false else { return nil }
        let name = String(decoding: UnsafeBufferPointer(rebasing: line[i...]), as: UTF8.self)
        return Symbol(start: ProcessAddress(start), size: size, name: name)
    }

    /// Later lines win. Every start and end is a boundary; between two
    /// consecutive boundaries ("a segment") one line owns every address. The
    /// lines are painted newest first and each paints only segments still
    /// bare; `next[k]` (path-compressed) skips to the first bare segment at or
    /// after `k`, so each segment is painted once: O(n log n) for n lines.
    private static func resolve(_ lines: [Symbol]) -> ([Symbol], [OwnedRange]) {
        guard !lines.isEmpty else { return ([], []) }
        var bounds: [UInt64] = []
        bounds.reserveCapacity(lines.count * 2)
        for s in lines { bounds.append(s.start.rawValue); bounds.append(s.end.rawValue) }
        bounds.sort()
        var unique = 0
        for b in bounds where unique == 0 || bounds[unique - 1] != b { bounds[unique] = b; unique += 1 }
        bounds.removeLast(bounds.count - unique)

        func index(of value: UInt64) -> Int {
            var lo = 0, hi = bounds.count
            while lo < hi {
                let mid = (lo + hi) / 2
                if bounds[mid] < value { lo = mid + 1 } else { hi = mid }
            }
            return lo
        }
        let segments = bounds.count - 1
        var painter = [Int](repeating: -1, count: segments)
        var next = Array(0...segments)
        func firstBare(_ k: Int) -> Int {
            var root = k
            while next[root] != root { root = next[root] }
            var j = k
            while next[j] != root { let n = next[j]; next[j] = root; j = n }
            return root
        }
        for line in lines.indices.reversed() {
            let stop = index(of: lines[line].end.rawValue)
            var k = firstBare(index(of: lines[line].start.rawValue))
            while k < stop {
                painter[k] = line
                next[k] = k + 1
                k = firstBare(k + 1)
            }
        }

        var painted: [OwnedRange] = []
        for k in 0..<segments where painter[k] >= 0 {
            if let last = painted.last, last.owner == painter[k], last.hi == bounds[k] {
                painted[painted.count - 1].hi = bounds[k + 1]
            } else {
                painted.append(OwnedRange(lo: bounds[k], hi: bounds[k + 1], owner: painter[k]))
            }
        }

        // Renumber owners from line order to start order.
        var owners = Array(Set(painted.map(\.owner)))
        owners.sort { (lines[$0].start, $0) < (lines[$1].start, $1) }
        var renumbered = [Int](repeating: -1, count: lines.count)
        for (i, line) in owners.enumerated() { renumbered[line] = i }
        for i in painted.indices { painted[i].owner = renumbered[painted[i].owner] }
        return (owners.map { lines[$0] }, painted)
    }

    /// The symbol whose code holds `address` (nil outside every symbol's
    /// `[start, start + size)`), its start, and the offset of `address` into it.
    public func lookup(_ address: ProcessAddress) -> (name: String, start: ProcessAddress, offset: UInt64)? {
        let a = address.rawValue
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].lo <= a { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, a < ranges[lo - 1].hi else { return nil }
        let s = symbols[ranges[lo - 1].owner]
        return (s.name, s.start, a - s.start.rawValue)
    }

    /// Bytes held (an estimate): each symbol's name, addresses and String,
    /// and the owned ranges.
    public var memoryBytes: Int {
        symbols.reduce(0) { $0 + 48 + $1.name.utf8.count } + ranges.count * 24
    }

    // MARK: - Finding the file

    /// Reads the perf map of process `pid`, nil when there is none or it was
    /// refused (``read(pid:maxBytes:)`` says why).
    public static func load(pid: Int32) -> PerfMap? { read(pid: pid).map }

    /// The most of a perf map read: a JIT that runs for days appends to its
    /// map for days (Node's `--perf-basic-prof` maps reach gigabytes), and a
    /// hostile process can write any size. Beyond it, the newest part (the
    /// file's end: JITs append) is read and the older lines are counted as
    /// skipped. 64 MiB is about 800,000 lines of V8's.
    public static let defaultMaxBytes = 64 << 20

    /// Process-wide counts, for a long-running reader's metrics: maps
    /// refused for their owner, and bytes left unread past a limit.
    public static var refusedCount: Int { counters.refused.load(ordering: .relaxed) }
    public static var skippedByteCount: Int { counters.skippedBytes.load(ordering: .relaxed) }
    private static let counters = Counters()
    private final class Counters: Sendable {
        let refused = Atomic<Int>(0)
        let skippedBytes = Atomic<Int>(0)
    }

    /// What reading a process's perf map found.
    public struct Read: Sendable {
        /// The symbols; nil when there is no map or it was refused.
        public var map: PerfMap?
        /// The file read (or refused).
        public var path: String?
        /// Why a file that exists was not read (its owner), in words.
        public var refusal: String?
        /// Bytes at the file's start left unread (beyond `maxBytes`).
        public var skippedBytes: Int = 0
        /// The file's size and modification time when read: a reader that
        /// finds them unchanged need not read it again.
        public var size: Int = 0
        public var modified: Int = 0
    }

    /// Reads the perf map of process `pid`, in ``paths(pid:)`` order, the way
    /// perf guards its own read (`dso__load_perf_map`, tools/perf/util/symbol.c:
    /// a map not owned by the reader or root is ignored):
    ///
    /// - The file must be owned by root or by the process's effective user
    ///   (`Uid:` of /proc/PID/status; for a process that is gone, by root or
    ///   by us): another user could otherwise plant `/tmp/perf-PID.map` and
    ///   name a root process's code as they please.
    /// - It is opened as a mapped binary is (``ModuleFiles/openForReading(_:)``):
    ///   inside the process's root, no symlink out of it, regular files only,
    ///   never blocking on a FIFO.
    /// - At most `maxBytes` of it are read: its end.
    public static func read(pid: Int32, maxBytes: Int = defaultMaxBytes) -> Read {
        let status = readWholeFile("/proc/\(pid)/status").map { String(decoding: $0, as: UTF8.self) }
        let owner = status.flatMap(effectiveUID(status:))
        for path in paths(pid: pid, status: status) {
            let fd = ModuleFiles.openForReading(path)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { continue }
            let fileOwner = UInt32(st.st_uid)
            let allowed = fileOwner == 0 || fileOwner == (owner ?? UInt32(geteuid()))
            guard allowed else {
                let whose = owner.map { "the process's user (uid \($0))" } ?? "us (the process is gone)"
                counters.refused.add(1, ordering: .relaxed)
                return Read(path: path, refusal: "\(path) is owned by uid \(fileOwner), not by \(whose) or root: ignored, as perf does")
            }
            let size = Int(st.st_size)
            let skip = max(0, size - max(0, maxBytes))
            guard var bytes = readAll(fd, from: skip, count: size - skip) else { continue }
            if skip > 0, let newline = bytes.firstIndex(of: UInt8(ascii: "\n")) {
                bytes.removeSubrange(0...newline)  // the first line read is cut: not a line
            }
            let map = bytes.withUnsafeBufferPointer { PerfMap(utf8: $0) }
            if skip > 0 { counters.skippedBytes.add(skip, ordering: .relaxed) }
            return Read(map: map, path: path, skippedBytes: skip, size: size, modified: Int(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int(st.st_mtim.tv_nsec))
        }
        return Read()
    }

    /// The size and modification time of the map ``read(pid:maxBytes:)`` would
    /// read (nil when there is none), to tell whether it changed.
    public static func stamp(pid: Int32) -> (size: Int, modified: Int)? {
        for path in paths(pid: pid) {
            let fd = ModuleFiles.openForReading(path)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            var st = stat()
            guard fstat(fd, &st) == 0 else { continue }
            return (Int(st.st_size), Int(st.st_mtim.tv_sec) &* 1_000_000_000 &+ Int(st.st_mtim.tv_nsec))
        }
        return nil
    }

    /// `count` bytes of `fd` from `offset` (fewer if the file shrank); nil on a read error.
    private static func readAll(_ fd: Int32, from offset: Int, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, count - done, off_t(offset + done)) }
            if n < 0 { if errno == EINTR { continue }; return nil }
            if n == 0 { break }
            done += n
        }
        bytes.removeSubrange(done...)
        return bytes
    }

    /// The effective uid: the second field of the `Uid:` line (proc(5)).
    static func effectiveUID(status: String) -> UInt32? {
        for line in status.split(separator: "\n") where line.hasPrefix("Uid:") {
            let fields = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
            return fields.count > 2 ? UInt32(fields[2]) : nil
        }
        return nil
    }

    /// Where the perf map of `pid` may be. A JIT names the file by its pid as
    /// it sees it, in its own pid namespace (a container's), and writes it to
    /// its own `/tmp`, in its own mount namespace: so first
    /// `/proc/PID/root/tmp/perf-NSPID.map` (NSPID the last field of the
    /// `NSpid:` line of `/proc/PID/status`, proc(5)), which needs the process
    /// alive; then `/tmp/perf-PID.map`, which is the same file for a process
    /// that shares our namespaces, and still there after it exits.
    public static func paths(pid: Int32) -> [String] {
        paths(pid: pid, status: readWholeFile("/proc/\(pid)/status").map { String(decoding: $0, as: UTF8.self) })
    }

    static func paths(pid: Int32, status: String?) -> [String] {
        let nspid = status.flatMap(namespacePID(status:)) ?? pid
        return ["/proc/\(pid)/root/tmp/perf-\(nspid).map", "/tmp/perf-\(pid).map"]
    }

    /// The last field of the `NSpid:` line (the pid in the innermost pid
    /// namespace; the line exists since Linux 4.1).
    static func namespacePID(status: String) -> Int32? {
        for line in status.split(separator: "\n") where line.hasPrefix("NSpid:") {
            return line.split(whereSeparator: { $0 == " " || $0 == "\t" }).last.flatMap { Int32($0) }
        }
        return nil
    }

}
