#if canImport(Glibc)
import Glibc
#endif
import SprofBase

/// Reads a raw recording (docs/raw-format.md).
///
/// Opening maps the whole file read-only and walks its record frames once:
/// the small records (metadata, processes, mapping snapshots, stats) are
/// decoded then, samples (raw and unwound) are only checked for consistent
/// lengths and counted.
/// Samples are decoded later, one at a time, by ``makeSampleCursor(pid:)`` /
/// ``forEachSample(pid:_:)``, each with the mapping snapshot in force for it.
///
/// A file cut short (a recording killed mid-write, a partial copy) is read up
/// to its last complete record: ``isTruncated`` says so and ``warnings``
/// explains. Records of unknown type are skipped by their length.
///
/// Mapping the file is safe because recordings are only ever replaced by
/// rename (``AtomicFile``), never rewritten in place; a file truncated by
/// someone else while mapped would fault (SIGBUS) on access past the new end.
///
/// `@unchecked Sendable`: immutable after `init`; the mapped bytes are
/// read-only.
public final class RawFileReader: @unchecked Sendable {
    /// The path given, or the name given for in-memory bytes.
    public let path: String
    public let formatVersion: RawFormatVersion
    /// The sprof version in the file header (at most 32 bytes).
    public let writerVersion: String
    public let metadata: RawMetadata
    /// One entry per pid, in order of the pid's first process record, each
    /// the pid's *last* record: a process is written again when more is
    /// known (its exit), and the last record is the one that counts
    /// (docs/raw-format.md, "Process").
    public let processes: [RawProcess]
    /// Every process record as it is in the file, repeats included.
    public let processRecords: [RawProcess]
    /// Every mapping snapshot, in file order.
    public let snapshots: [RawMappingSnapshot]
    /// The stats record; nil when the recording did not finish.
    public let stats: RawStats?
    /// Named addresses (format 1.2: written at the end of a recording); empty
    /// in older files and in recordings made without symbolization.
    public let locations: [RawLocation.Key: RawLocation]
    /// Sample records present (of a kind this build knows), raw and unwound.
    public let sampleCount: Int
    /// Of ``sampleCount``, the unwound-sample records (user stack unwound at
    /// record time, format 1.1).
    public let unwoundSampleCount: Int
    /// Samples per tgid, raw and unwound.
    public let sampleCounts: [Int32: Int]
    /// The file ends inside a record; everything before it was read.
    public let isTruncated: Bool
    /// Where the incomplete record starts, when ``isTruncated``.
    public let truncatedAtOffset: Int?
    /// Records of unknown type skipped, by type.
    public let skippedRecords: [RawRecordType: Int]
    /// Things a human should know about the file, one sentence each.
    public let warnings: [String]
    public var fileSize: Int { storage.bytes.count }
    /// Both the stats record and every record before it are present.
    public var isComplete: Bool { stats != nil && !isTruncated }

    let storage: RawFileStorage
    /// Offset of the first record (after the header).
    let firstRecordOffset: Int
    /// End of the last complete record.
    let endOfRecords: Int
    /// pid → index into ``processes``.
    private let processIndex: [Int32: Int]
    private let snapshotIndex: [SnapshotKey: Int]

    private struct SnapshotKey: Hashable { var pid: Int32; var generation: UInt64 }

    /// Maps and reads the file at `path`. Pipes and other unmappable files
    /// are read into memory instead.
    public convenience init(path: String) throws(CaptureError) {
        try self.init(storage: RawFileStorage.open(path), name: path)
    }

    /// Reads a recording held in memory (tests, or a file received whole).
    public convenience init(bytes: [UInt8], name: String = "<memory>") throws(CaptureError) {
        try self.init(storage: RawFileStorage(copying: bytes), name: name)
    }

    private init(storage: RawFileStorage, name: String) throws(CaptureError) {
        self.storage = storage
        path = name
        let b = storage.bytes
        let size = b.count

        // Header.
        let magic = RawHeader.magic
        let sniff = min(size, magic.count)
        for i in 0..<sniff where b[i] != magic[i] { throw .notARawFile(path: name) }
        guard size >= RawHeader.writerOffset else { throw .truncatedHeader(path: name, size: size) }
        let version = RawFormatVersion(major: b.u16(RawHeader.majorOffset), minor: b.u16(RawHeader.minorOffset))
        let headerSize = Int(b.u32(RawHeader.sizeOffset))
        let writerEnd = min(size, RawHeader.writerOffset + RawHeader.writerLength)
        let writer = String(decoding: b[RawHeader.writerOffset..<writerEnd].prefix { $0 != 0 }, as: UTF8.self)
        guard version.major == RawFormatVersion.current.major else {
            throw .unsupportedVersion(path: name, found: version, writer: writer)
        }
        guard headerSize >= RawHeader.size else {
            throw .malformedRecord(path: name, offset: 0, record: "header", detail: "header size \(headerSize) is below the minimum \(RawHeader.size)")
        }
        guard size >= headerSize else { throw .truncatedHeader(path: name, size: size) }
        formatVersion = version
        writerVersion = writer
        firstRecordOffset = headerSize

        var warnings: [String] = []
        if version > RawFormatVersion.current {
            warnings.append("format \(version) is newer than this sprof's \(RawFormatVersion.current): "
                            + "records and fields it does not know are skipped")
        }

        // Records.
        var metadata: RawMetadata?
        var processes: [RawProcess] = []
        var snapshots: [RawMappingSnapshot] = []
        var stats: RawStats?
        var locations: [RawLocation.Key: RawLocation] = [:]
        var sampleCount = 0
        var unwoundSampleCount = 0
        var sampleCounts: [Int32: Int] = [:]
        var skipped: [RawRecordType: Int] = [:]
        var unknownKinds: [UInt16: Int] = [:]
        var afterStats = 0
        var truncatedAt: Int?
        var offset = headerSize

        func malformed(_ type: RawRecordType, _ at: Int, _ detail: String) -> CaptureError {
            .malformedRecord(path: name, offset: at, record: type.description, detail: detail)
        }

        while offset < size {
            guard size - offset >= RawFrame.size else {
                truncatedAt = offset
                warnings.append("the file ends inside a record frame at byte \(offset) "
                                + "(\(size - offset) of \(RawFrame.size) bytes): it was cut short; everything before it is kept")
                break
            }
            let type = RawRecordType(rawValue: b.u32(offset))
            let length = Int(b.u32(offset + 4))
            let payloadStart = offset + RawFrame.size
            guard length <= size - payloadStart else {
                truncatedAt = offset
                warnings.append("the file ends inside a \(type) record at byte \(offset) "
                                + "(\(size - payloadStart) of \(length) payload bytes): it was cut short; everything before it is kept")
                break
            }
            let payload = UnsafeRawBufferPointer(rebasing: b[payloadStart..<(payloadStart + length)])
            if metadata == nil && type != .metadata { throw .missingMetadata(path: name) }
            if stats != nil { afterStats += 1 }
            switch type {
            case .metadata:
                if metadata != nil {
                    warnings.append("a second metadata record at byte \(offset) was ignored")
                } else {
                    do throws(RawDecoder.Overrun) { metadata = try RawDecoder.decode(payload) { (d) throws(RawDecoder.Overrun) in try d.metadata() } }
                    catch { throw malformed(type, offset, error.detail) }
                }
            case .process:
                do throws(RawDecoder.Overrun) { processes.append(try RawDecoder.decode(payload) { (d) throws(RawDecoder.Overrun) in try d.process() }) }
                catch { throw malformed(type, offset, error.detail) }
            case .mappings:
                do throws(RawDecoder.Overrun) { snapshots.append(try RawDecoder.decode(payload) { (d) throws(RawDecoder.Overrun) in try d.snapshot() }) }
                catch { throw malformed(type, offset, error.detail) }
            case .sample, .unwoundSample:
                typealias L = RawSampleLayout
                guard length >= L.fixedSize else {
                    throw malformed(type, offset, "\(length) bytes, shorter than the \(L.fixedSize)-byte fixed part")
                }
                let k = Int(payload.u16(L.kernelFrameCount))
                if type == .sample {
                    let u = Int(payload.u32(L.userStackLength))
                    guard L.payloadSize(kernelFrames: k, userStack: u) <= length else {
                        throw malformed(type, offset, "\(length) bytes cannot hold \(k) kernel frames and \(u) user-stack bytes")
                    }
                } else {
                    // `userStackLength` counts bytes copied at capture, not
                    // bytes in the record: nothing to check it against.
                    guard L.unwoundPayloadSize(kernelFrames: k, userFrames: 0) <= length else {
                        throw malformed(type, offset, "\(length) bytes cannot hold \(k) kernel frames and the user frame count")
                    }
                    let n = Int(payload.u16(L.fixedSize + k * 8 + L.userFrameCount))
                    guard L.unwoundPayloadSize(kernelFrames: k, userFrames: n) <= length else {
                        throw malformed(type, offset, "\(length) bytes cannot hold \(k) kernel frames and \(n) user frames")
                    }
                }
                let kind = payload.u16(L.kind)
                if SampleKind(rawValue: kind) == nil {
                    unknownKinds[kind, default: 0] += 1
                } else {
                    sampleCount += 1
                    if type == .unwoundSample { unwoundSampleCount += 1 }
                    // Lookup and store rather than `[k, default: 0] += 1`,
                    // whose modify coroutine allocates per call in debug
                    // builds (measured with heaptrack): this runs per sample.
                    let tgid = Int32(bitPattern: payload.u32(L.tgid))
                    sampleCounts[tgid] = (sampleCounts[tgid] ?? 0) &+ 1
                }
            case .locations:
                do throws(RawDecoder.Overrun) {
                    for l in try RawDecoder.decode(payload, { (d) throws(RawDecoder.Overrun) in try d.locations() }) {
                        locations[l.key] = l
                    }
                } catch { throw malformed(type, offset, error.detail) }
            case .stats:
                if stats != nil {
                    warnings.append("a second stats record at byte \(offset) was ignored")
                } else {
                    do throws(RawDecoder.Overrun) { stats = try RawDecoder.decode(payload) { (d) throws(RawDecoder.Overrun) in try d.stats() } }
                    catch { throw malformed(type, offset, error.detail) }
                }
            default:
                skipped[type, default: 0] += 1
            }
            offset = payloadStart + length
        }
        guard let metadata else {
            // Nothing after the header, or the metadata record itself cut short.
            throw .truncatedHeader(path: name, size: size)
        }
        if truncatedAt != nil {
            warnings[warnings.count - 1] += " (\(sampleCount) samples)"
        }
        for (type, n) in skipped.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            warnings.append("skipped \(n) record\(n == 1 ? "" : "s") of unknown type \(type.rawValue) (written by a newer sprof?)")
        }
        for (kind, n) in unknownKinds.sorted(by: { $0.key < $1.key }) {
            warnings.append("skipped \(n) sample\(n == 1 ? "" : "s") of unknown kind \(kind)")
        }
        if afterStats > 0 { warnings.append("\(afterStats) record\(afterStats == 1 ? "" : "s") follow the stats record") }
        if stats == nil && truncatedAt == nil {
            warnings.append("no stats record: the recording did not finish (sprof was killed?); "
                            + "lost-sample counts and the end reason are unknown")
        }
        if let stats, truncatedAt == nil, stats.samplesWritten != UInt64(sampleCount) {
            warnings.append("the stats record counts \(stats.samplesWritten) samples but the file holds \(sampleCount)")
        }

        self.metadata = metadata
        self.processRecords = processes
        var latest: [RawProcess] = []
        var index: [Int32: Int] = [:]
        for p in processes {
            if let i = index[p.pid] { latest[i] = p } else { index[p.pid] = latest.count; latest.append(p) }
        }
        self.processes = latest
        processIndex = index
        self.snapshots = snapshots
        self.stats = stats
        self.locations = locations
        self.sampleCount = sampleCount
        self.unwoundSampleCount = unwoundSampleCount
        self.sampleCounts = sampleCounts
        self.isTruncated = truncatedAt != nil
        self.truncatedAtOffset = truncatedAt
        self.skippedRecords = skipped
        self.warnings = warnings
        self.endOfRecords = offset
        var byKey: [SnapshotKey: Int] = [:]
        for (i, s) in snapshots.enumerated() { byKey[SnapshotKey(pid: s.pid, generation: s.generation)] = i }
        snapshotIndex = byKey
    }

    /// The last process record for `pid`.
    public func process(pid: Int32) -> RawProcess? {
        processIndex[pid].map { processes[$0] }
    }

    /// The snapshot of `pid` with this generation (the last one, should a
    /// generation have been written twice).
    public func mappings(pid: Int32, generation: UInt64) -> RawMappingSnapshot? {
        snapshotIndex[SnapshotKey(pid: pid, generation: generation)].map { snapshots[$0] }
    }

    /// A cursor over the samples in file order, optionally only those of one
    /// tgid.
    public func makeSampleCursor(pid: Int32? = nil) -> RawSampleCursor {
        RawSampleCursor(reader: self, pid: pid)
    }

    /// Calls `body` with each sample (of `pid`, if given) and the mapping
    /// snapshot of its tgid in force at that point of the file (nil if none
    /// was written before it).
    ///
    /// `body` gets the same reused sample storage each time; keeping the
    /// sample is safe (copy-on-write) but costs one allocation per kept sample.
    public func forEachSample<E: Error>(pid: Int32? = nil,
                                        _ body: (RawSample, RawMappingSnapshot?) throws(E) -> Void) throws(E) {
        var cursor = makeSampleCursor(pid: pid)
        while let (sample, mappings) = cursor.next() { try body(sample, mappings) }
    }
}

/// Iterates a reader's samples — raw (type 4) and unwound (type 6) records
/// alike — in file order, tracking which mapping snapshot is in force for
/// each tgid. ``RawSample/isUnwound`` tells them apart.
///
/// Allocation-free per sample in the steady state: the returned sample's
/// stack storage is reused for the next one (kept capacity), so as long as
/// the caller lets go of a sample before asking for the next, no sample
/// allocates. (Unwinding reads every sample; decode must not dominate it.)
public struct RawSampleCursor {
    let reader: RawFileReader
    let pid: Int32?
    private var offset: Int
    /// Index into `reader.snapshots` of the next mapping record to be met.
    private var nextSnapshot = 0
    /// tgid → index into `reader.snapshots` of its snapshot in force.
    private var inForce: [Int32: Int] = [:]
    private var sample: RawSample

    init(reader: RawFileReader, pid: Int32?) {
        self.reader = reader
        self.pid = pid
        offset = reader.firstRecordOffset
        sample = RawSample(kind: .cpu, flags: [], tgid: 0, tid: 0, timeNanoseconds: 0, cpu: 0, comm: Comm(low: 0, high: 0),
                          ip: ProcessAddress(0), sp: ProcessAddress(0), bp: ProcessAddress(0), weight: 0, stackEnd: nil,
                          userStackRequested: 0, kernelStack: [], userStack: [])
    }

    /// The next sample and the snapshot of its tgid in force, or nil at the
    /// end (or at the start of a truncated last record).
    public mutating func next() -> (sample: RawSample, mappings: RawMappingSnapshot?)? {
        let b = reader.storage.bytes
        typealias L = RawSampleLayout
        while offset < reader.endOfRecords {
            let type = RawRecordType(rawValue: b.u32(offset))
            let length = Int(b.u32(offset + 4))
            let p = offset + RawFrame.size
            offset = p + length
            switch type {
            case .mappings:
                inForce[reader.snapshots[nextSnapshot].pid] = nextSnapshot
                nextSnapshot += 1
            case .sample, .unwoundSample:
                let tgid = Int32(bitPattern: b.u32(p + L.tgid))
                if let pid, pid != tgid { continue }
                guard let kind = SampleKind(rawValue: b.u16(p + L.kind)) else { continue }
                let k = Int(b.u16(p + L.kernelFrameCount))
                let u = Int(b.u32(p + L.userStackLength))
                sample.kind = kind
                sample.flags = SampleFlags(rawValue: b.u32(p + L.flags))
                sample.tgid = tgid
                sample.tid = Int32(bitPattern: b.u32(p + L.tid))
                sample.timeNanoseconds = b.u64(p + L.timeNs)
                sample.cpu = b.u32(p + L.cpu)
                sample.userStackRequested = b.u32(p + L.userStackRequested)
                sample.ip = ProcessAddress(b.u64(p + L.ip))
                sample.sp = ProcessAddress(b.u64(p + L.sp))
                sample.bp = ProcessAddress(b.u64(p + L.bp))
                sample.weight = b.u64(p + L.weight)
                let end = b.u64(p + L.stackEnd)
                sample.stackEnd = end == 0 ? nil : ProcessAddress(end)
                sample.comm = Comm(low: b.u64(p + L.comm), high: b.u64(p + L.comm + 8))
                sample.kernelFrameCount = k
                sample.stackBytes.removeAll(keepingCapacity: true)
                let start = p + L.fixedSize
                if type == .sample {
                    sample.userFrameCount = nil
                    sample.unwindStop = 0
                    sample.unwoundFromUserStackCount = 0
                    sample.stackBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[start..<(start + k * 8 + u)]))
                } else {
                    // Kernel frames, then the user frames after their 4-byte
                    // header: the same layout in `stackBytes`, two copies.
                    let h = start + k * 8
                    let n = Int(b.u16(h + L.userFrameCount))
                    sample.userFrameCount = n
                    sample.unwindStop = b[h + L.unwindStop]
                    sample.unwoundFromUserStackCount = u
                    sample.stackBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[start..<h]))
                    let frames = h + L.unwoundHeaderSize
                    sample.stackBytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: b[frames..<(frames + n * 8)]))
                }
                return (sample, inForce[tgid].map { reader.snapshots[$0] })
            default:
                continue
            }
        }
        return nil
    }
}

// MARK: - Storage

/// The file's bytes: a read-only mapping, or a heap copy.
final class RawFileStorage: @unchecked Sendable {
    let bytes: UnsafeRawBufferPointer
    private let mapped: Bool

    init(copying array: [UInt8]) {
        let m = UnsafeMutableRawBufferPointer.allocate(byteCount: max(array.count, 1), alignment: 16)
        array.withUnsafeBytes { if $0.count > 0 { m.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        bytes = UnsafeRawBufferPointer(start: m.baseAddress, count: array.count)
        mapped = false
    }

    private init(mapping p: UnsafeRawPointer, count: Int) {
        bytes = UnsafeRawBufferPointer(start: p, count: count)
        mapped = true
    }

    deinit {
        if mapped { Syscalls.munmap(bytes.baseAddress!, bytes.count) } else { bytes.deallocate() }
    }

    static func open(_ path: String) throws(CaptureError) -> RawFileStorage {
        let fd: Int32
        do { fd = try Syscalls.open(path, O_RDONLY | O_CLOEXEC) } catch { throw .cannotOpen(path: path, errno: error.code) }
        defer { try? Syscalls.close(fd) }
        let st: FileStatus
        do { st = try Syscalls.fstat(fd) } catch { throw .cannotOpen(path: path, errno: error.code) }
        if st.isDirectory { throw .cannotOpen(path: path, errno: EISDIR) }
        if st.isRegularFile && st.size > 0, let p = try? Syscalls.mmapReadOnly(fd, st.size) {
            return RawFileStorage(mapping: p, count: st.size)
        }
        // Empty, a pipe, or a file system that cannot mmap: read it.
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            var result: Result<Int, Errno> = .success(0)
            chunk.withUnsafeMutableBytes { c in
                result = Result { () throws(Errno) in try Syscalls.read(fd, c.baseAddress!, c.count) }
            }
            let n: Int
            switch result {
            case .success(let r): n = r
            case .failure(let e): throw .io(operation: "read", path: path, errno: e.code)
            }
            if n == 0 { break }
            data.append(contentsOf: chunk[..<n])
        }
        return RawFileStorage(copying: data)
    }
}

// MARK: - Decoding

extension UnsafeRawBufferPointer {
    /// Little-endian loads at a byte offset; callers have checked the bounds.
    @inline(__always) func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
    @inline(__always) func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
    @inline(__always) func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
}

/// Bounds-checked little-endian reading of one record payload. Bytes after
/// the fields a reader knows are ignored: a later minor version may append
/// fields to a record (docs/raw-format.md, "Versioning").
struct RawDecoder {
    struct Overrun: Error { var detail: String }
    let payload: UnsafeRawBufferPointer
    var at = 0

    init(_ payload: UnsafeRawBufferPointer) { self.payload = payload }

    static func decode<T>(_ payload: UnsafeRawBufferPointer,
                          _ body: (inout RawDecoder) throws(Overrun) -> T) throws(Overrun) -> T {
        var d = RawDecoder(payload)
        return try body(&d)
    }

    private mutating func need(_ n: Int, _ what: String) throws(Overrun) {
        guard n <= payload.count - at else {
            throw Overrun(detail: "\(what) needs \(n) bytes at payload offset \(at) but only \(payload.count - at) remain")
        }
    }
    mutating func u8(_ what: String) throws(Overrun) -> UInt8 {
        try need(1, what); defer { at += 1 }; return payload[at]
    }
    mutating func u32(_ what: String) throws(Overrun) -> UInt32 {
        try need(4, what); defer { at += 4 }; return payload.u32(at)
    }
    mutating func i32(_ what: String) throws(Overrun) -> Int32 { Int32(bitPattern: try u32(what)) }
    mutating func u64(_ what: String) throws(Overrun) -> UInt64 {
        try need(8, what); defer { at += 8 }; return payload.u64(at)
    }
    mutating func raw(_ n: Int, _ what: String) throws(Overrun) -> [UInt8] {
        try need(n, what); defer { at += n }; return Array(payload[at..<(at + n)])
    }
    mutating func string(_ what: String) throws(Overrun) -> String {
        let n = Int(try u32(what + " length"))
        try need(n, what)
        defer { at += n }
        return String(decoding: UnsafeRawBufferPointer(rebasing: payload[at..<(at + n)]), as: UTF8.self)
    }
    /// A count of items at least `minSize` bytes each: rejects counts the
    /// payload cannot hold before anything is reserved for them.
    mutating func count(_ what: String, minSize: Int) throws(Overrun) -> Int {
        let n = Int(try u32(what))
        guard n <= (payload.count - at) / minSize else {
            throw Overrun(detail: "\(n) \(what) cannot fit in the \(payload.count - at) bytes left")
        }
        return n
    }

    mutating func metadata() throws(Overrun) -> RawMetadata {
        let wall = try u64("wall-clock start")
        let mono = try u64("monotonic start")
        let freq = try u32("frequency")
        let ustack = try u32("user stack size")
        let version = try string("sprof version")
        let release = try string("kernel release")
        let host = try string("hostname")
        let target = try string("target")
        var variants: [String] = []
        for _ in 0..<(try count("variants", minSize: 4)) { variants.append(try string("variant")) }
        var extra: [String: String] = [:]
        for _ in 0..<(try count("extra entries", minSize: 8)) {
            let k = try string("extra key")
            extra[k] = try string("extra value")
        }
        return RawMetadata(sprofVersion: version, kernelRelease: release, hostname: host,
                           wallClockStartNanoseconds: wall, monotonicStartNanoseconds: mono,
                           frequency: freq, userStackSize: ustack, target: target, variants: variants, extra: extra)
    }

    mutating func process() throws(Overrun) -> RawProcess {
        let pid = try i32("pid")
        let flags = try u32("flags")
        let exit = try u64("exit time")
        let command = try string("command")
        let exe = try string("executable path")
        return RawProcess(pid: pid, command: command, executablePath: exe, exited: flags & 1 != 0,
                          exitTimeNanoseconds: flags & 2 != 0 ? exit : nil)
    }

    /// Smallest encoded mapping: start, end, offset, inode (u64) and the
    /// device (2 × u32) = 40 bytes, perms and build-id length (u8 each), and
    /// an empty path's u32 length.
    static let minMappingSize = 40 + 1 + 1 + 4

    mutating func snapshot() throws(Overrun) -> RawMappingSnapshot {
        let pid = try i32("pid")
        let n = Int(try u32("mapping count"))
        let generation = try u64("generation")
        guard n <= (payload.count - at) / RawDecoder.minMappingSize else {
            throw Overrun(detail: "\(n) mappings cannot fit in the \(payload.count - at) bytes left")
        }
        var mappings: [Mapping] = []
        mappings.reserveCapacity(n)
        for _ in 0..<n {
            let start = try u64("start"), end = try u64("end"), off = try u64("file offset")
            let major = try u32("device major"), minor = try u32("device minor")
            let inode = try u64("inode")
            let perms = MappingPermissions(rawValue: try u8("permissions"))
            let idLength = Int(try u8("build-id length"))
            let id = try raw(idLength, "build-id")
            let path = try string("path")
            mappings.append(Mapping(start: ProcessAddress(start), end: ProcessAddress(end), fileOffset: FileOffset(off),
                                    permissions: perms, deviceMajor: major, deviceMinor: minor, inode: inode,
                                    path: path, buildID: idLength == 0 ? nil : BuildID(id)))
        }
        return RawMappingSnapshot(pid: pid, generation: generation, mappings: mappings)
    }

    mutating func locations() throws(Overrun) -> [RawLocation] {
        let n = try count("locations", minSize: 34)
        var out: [RawLocation] = []
        out.reserveCapacity(n)
        for _ in 0..<n {
            let pid = try i32("pid")
            let generation = try u64("generation")
            let address = try u64("address")
            let flags = try u8("flags")
            let kind = try u8("kind")
            let module = try string("module")
            let offset = try u64("module offset")
            var frames: [RawLocation.Frame] = []
            for _ in 0..<(try count("frames", minSize: 17)) {
                let function = try string("function")
                let system = try string("system name")
                let file = try string("file")
                let line = try u32("line")
                let inlined = try u8("inlined") != 0
                frames.append(RawLocation.Frame(function: function, systemName: system, file: file, line: line, isInlined: inlined))
            }
            let key = RawLocation.Key(pid: pid, generation: generation, address: address,
                                      isReturnAddress: flags & 1 != 0, isKernel: flags & 2 != 0)
            out.append(RawLocation(key: key, kind: kind, module: module, moduleOffset: offset, frames: frames))
        }
        return out
    }

    mutating func stats() throws(Overrun) -> RawStats {
        let written = try u64("samples written")
        let lost = try u64("samples lost")
        let duration = try u64("duration")
        let reason = try string("end reason")
        var counters: [String: UInt64] = [:]
        for _ in 0..<(try count("counters", minSize: 12)) {
            let k = try string("counter name")
            counters[k] = try u64("counter value")
        }
        return RawStats(samplesWritten: written, samplesLost: lost, counters: counters,
                        durationNanoseconds: duration, endReason: reason)
    }
}
