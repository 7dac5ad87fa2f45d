#if canImport(Glibc)
import Glibc
#endif
import SprofBase

/// Writes a raw recording (docs/raw-format.md) as a stream, through an
/// ``AtomicFile``: the destination appears only when ``finish(stats:)``
/// succeeds, complete, and a failed or abandoned recording leaves it as it was.
///
/// Order: ``writeMetadata(_:)`` first, exactly once; then processes, mapping
/// snapshots and samples in any interleaving (a sample is read with the
/// latest snapshot of its tgid written before it); ``finish(stats:)`` last.
///
/// `@unchecked Sendable`: one thread at a time uses it (the recorder's
/// writer thread, then the main thread for `finish` after joining it);
/// ownership moves, it is never shared.
public final class RawFileWriter: @unchecked Sendable {
    private let file: AtomicFile
    private var wroteMetadata = false
    /// Scratch for the small, rare records; samples are encoded straight
    /// into the file's buffer instead.
    private var scratch = RawEncoder()

    /// The destination path.
    public var path: String { file.destination }
    /// Sample records written so far, raw and unwound.
    public private(set) var samplesWritten: UInt64 = 0
    /// Bytes written so far (header and all records, buffered or not).
    public var bytesWritten: UInt64 { file.bytesWritten }

    /// Creates the temporary file next to `path`. Fails here, before anything
    /// is recorded, if the directory is missing or not writable.
    ///
    /// `mode`: 0600 by default: the file holds copies of user stacks, which
    /// can contain anything the profiled programs had in memory, and every
    /// process's command name.
    public init(path: String, mode: mode_t = SafeFile.privateFileMode,
                bufferCapacity: Int = AtomicFile.defaultBufferCapacity) throws(CaptureError) {
        file = try AtomicFile(destination: path, mode: mode, bufferCapacity: bufferCapacity)
    }

    /// Writes the file header and the metadata record. Must be the first
    /// call, and made once.
    public func writeMetadata(_ m: RawMetadata) throws(CaptureError) {
        precondition(!wroteMetadata, "RawFileWriter.writeMetadata called twice")
        wroteMetadata = true
        var h = RawEncoder()
        h.bytes.append(contentsOf: RawHeader.magic)
        h.u16(RawFormatVersion.current.major)
        h.u16(RawFormatVersion.current.minor)
        h.u32(UInt32(RawHeader.size))
        var writer = Array(m.sprofVersion.utf8.prefix(RawHeader.writerLength))
        writer += [UInt8](repeating: 0, count: RawHeader.writerLength - writer.count)
        h.bytes.append(contentsOf: writer)
        assert(h.bytes.count == RawHeader.size)
        try file.write(h.bytes)

        try record(.metadata) { e in
            e.u64(m.wallClockStartNanoseconds)
            e.u64(m.monotonicStartNanoseconds)
            e.u32(m.frequency)
            e.u32(m.userStackSize)
            e.string(m.sprofVersion)
            e.string(m.kernelRelease)
            e.string(m.hostname)
            e.string(m.target)
            e.u32(UInt32(m.variants.count))
            for v in m.variants { e.string(v) }
            e.u32(UInt32(m.extra.count))
            for (k, v) in m.extra.sorted(by: { $0.key < $1.key }) { e.string(k); e.string(v) }
        }
    }

    public func writeProcess(_ p: RawProcess) throws(CaptureError) {
        try record(.process) { e in
            e.i32(p.pid)
            e.u32((p.exited ? 1 : 0) | (p.exitTimeNanoseconds != nil ? 2 : 0))
            e.u64(p.exitTimeNanoseconds ?? 0)
            e.string(p.command)
            e.string(p.executablePath)
        }
    }

    /// A snapshot of `pid`'s mappings. Samples of `pid` written after it (and
    /// before the next snapshot of `pid`) are unwound with it.
    public func writeMappings(pid: Int32, generation: UInt64, mappings: [Mapping]) throws(CaptureError) {
        try record(.mappings) { e in
            e.i32(pid)
            e.u32(UInt32(mappings.count))
            e.u64(generation)
            for m in mappings {
                e.u64(m.start.rawValue)
                e.u64(m.end.rawValue)
                e.u64(m.fileOffset.rawValue)
                e.u32(m.deviceMajor)
                e.u32(m.deviceMinor)
                e.u64(m.inode)
                e.u8(m.permissions.rawValue)
                // A build-id is a hash (20 bytes for SHA-1, 16 for MD5 and
                // xxhash); 255 bytes is far beyond any in use.
                let id = m.buildID?.bytes.prefix(255) ?? []
                e.u8(UInt8(id.count))
                e.bytes.append(contentsOf: id)
                e.string(m.path)
            }
        }
    }

    /// Appends one sample record: type 4 (the user-stack bytes as copied) for
    /// a raw sample; type 6 for a sample that is already unwound
    /// (``RawSample/isUnwound``, e.g. one read from another file), with its
    /// own frames, stop and captured byte count.
    ///
    /// Allocation-free: the record is encoded in place in the file's write
    /// buffer, and the stack bytes copied once, from the sample to that buffer
    /// (the writer thread sees every sample; an allocation here would be one
    /// per sample, thousands per second).
    public func writeSample(_ s: RawSample) throws(CaptureError) {
        precondition(wroteMetadata, "RawFileWriter: writeMetadata must come first")
        precondition(s.kernelFrameCount >= 0 && s.kernelFrameCount <= Int(UInt16.max)
                     && s.stackBytes.count >= s.kernelFrameCount * 8, "RawSample with inconsistent kernel frame count")
        if let frameCount = s.userFrameCount {
            precondition(frameCount >= 0 && s.stackBytes.count == (s.kernelFrameCount + frameCount) * 8,
                         "unwound RawSample with inconsistent user frame count")
            // The frames are already little-endian u64s in `stackBytes`.
            let kernelBytes = s.kernelFrameCount * 8
            try writeUnwound(s, frameCount: frameCount, stop: s.unwindStop) { dst in
                s.stackBytes.withUnsafeBytes { dst.copyMemory(from: $0.baseAddress! + kernelBytes, byteCount: frameCount * 8) }
            }
            return
        }
        let stackCount = s.stackBytes.count
        let userCount = stackCount - s.kernelFrameCount * 8
        let payload = RawSampleLayout.payloadSize(kernelFrames: s.kernelFrameCount, userStack: userCount)
        try file.withWriteSpace(RawFrame.size + payload) { out in
            let r = Self.storeFrameAndFixedPart(s, type: .sample, payload: payload, userStackLength: userCount, into: out)
            // Kernel frames are already little-endian u64s in `stackBytes`
            // (RawSample's layout), followed by the user stack: one copy.
            if stackCount > 0 {
                s.stackBytes.withUnsafeBytes { (r + RawSampleLayout.fixedSize).copyMemory(from: $0.baseAddress!, byteCount: stackCount) }
            }
        }
        samplesWritten += 1
    }

    /// Appends one unwound-sample record (type 6, format 1.1): `s` as
    /// captured, but with its user stack replaced by `userFrames` (innermost
    /// first: the sampled ip, then return addresses) and `stop`, why the
    /// unwind ended (SprofUnwind's `UnwindStop` raw value, 0 = complete).
    /// The record keeps `s`'s fixed part, including how many user-stack bytes
    /// were copied, and its kernel frames; its user-stack bytes are not
    /// written. (`s` may also be an unwound sample read from a file: its
    /// kernel frames and captured byte count are kept, its frames replaced.)
    ///
    /// Allocation-free per call, like ``writeSample(_:)``. At most 65535
    /// user frames (the count is a u16).
    public func writeUnwoundSample(_ s: RawSample, userFrames: UnsafeBufferPointer<UInt64>,
                                   stop: UInt8) throws(CaptureError) {
        precondition(wroteMetadata, "RawFileWriter: writeMetadata must come first")
        precondition(s.kernelFrameCount >= 0 && s.kernelFrameCount <= Int(UInt16.max)
                     && s.stackBytes.count >= s.kernelFrameCount * 8, "RawSample with inconsistent kernel frame count")
        try writeUnwound(s, frameCount: userFrames.count, stop: stop) { dst in
            #if _endian(little)
            dst.copyMemory(from: userFrames.baseAddress!, byteCount: userFrames.count * 8)
            #else
            for i in 0..<userFrames.count {
                dst.storeBytes(of: userFrames[i].littleEndian, toByteOffset: i * 8, as: UInt64.self)
            }
            #endif
        }
    }

    /// The type-6 record of `s` with `frameCount` user frames, which
    /// `copyFrames` stores (little-endian u64s) at the pointer it is given;
    /// called only when `frameCount > 0`.
    private func writeUnwound(_ s: RawSample, frameCount: Int, stop: UInt8,
                              copyFrames: (UnsafeMutableRawPointer) -> Void) throws(CaptureError) {
        precondition(frameCount <= RawSampleLayout.maxUserFrames,
                     "RawFileWriter: \(frameCount) user frames, at most \(RawSampleLayout.maxUserFrames)")
        typealias L = RawSampleLayout
        let kernelBytes = s.kernelFrameCount * 8
        let payload = L.unwoundPayloadSize(kernelFrames: s.kernelFrameCount, userFrames: frameCount)
        let captured = s.capturedUserStackCount
        try file.withWriteSpace(RawFrame.size + payload) { out in
            let r = Self.storeFrameAndFixedPart(s, type: .unwoundSample, payload: payload,
                                                userStackLength: captured, into: out)
            if kernelBytes > 0 {
                s.stackBytes.withUnsafeBytes { (r + L.fixedSize).copyMemory(from: $0.baseAddress!, byteCount: kernelBytes) }
            }
            let h = r + L.fixedSize + kernelBytes
            h.storeBytes(of: UInt16(frameCount).littleEndian, toByteOffset: L.userFrameCount, as: UInt16.self)
            h.storeBytes(of: stop, toByteOffset: L.unwindStop, as: UInt8.self)
            h.storeBytes(of: 0, toByteOffset: L.unwoundReserved, as: UInt8.self)
            if frameCount > 0 { copyFrames(h + L.unwoundHeaderSize) }
        }
        samplesWritten += 1
    }

    /// Writes the 8-byte frame and the 92-byte fixed part shared by sample
    /// and unwound-sample records at the start of `out`; returns where the
    /// payload starts.
    @inline(__always)
    private static func storeFrameAndFixedPart(_ s: RawSample, type: RawRecordType, payload: Int, userStackLength: Int,
                                               into out: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawPointer {
        let p = out.baseAddress!
        p.storeBytes(of: type.rawValue.littleEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: UInt32(payload).littleEndian, toByteOffset: 4, as: UInt32.self)
        let r = p + RawFrame.size
        typealias L = RawSampleLayout
        r.storeBytes(of: s.kind.rawValue.littleEndian, toByteOffset: L.kind, as: UInt16.self)
        r.storeBytes(of: UInt16(s.kernelFrameCount).littleEndian, toByteOffset: L.kernelFrameCount, as: UInt16.self)
        r.storeBytes(of: s.flags.rawValue.littleEndian, toByteOffset: L.flags, as: UInt32.self)
        r.storeBytes(of: s.tgid.littleEndian, toByteOffset: L.tgid, as: Int32.self)
        r.storeBytes(of: s.tid.littleEndian, toByteOffset: L.tid, as: Int32.self)
        r.storeBytes(of: s.timeNanoseconds.littleEndian, toByteOffset: L.timeNs, as: UInt64.self)
        r.storeBytes(of: s.cpu.littleEndian, toByteOffset: L.cpu, as: UInt32.self)
        r.storeBytes(of: s.userStackRequested.littleEndian, toByteOffset: L.userStackRequested, as: UInt32.self)
        r.storeBytes(of: s.ip.rawValue.littleEndian, toByteOffset: L.ip, as: UInt64.self)
        r.storeBytes(of: s.sp.rawValue.littleEndian, toByteOffset: L.sp, as: UInt64.self)
        r.storeBytes(of: s.bp.rawValue.littleEndian, toByteOffset: L.bp, as: UInt64.self)
        r.storeBytes(of: s.weight.littleEndian, toByteOffset: L.weight, as: UInt64.self)
        r.storeBytes(of: (s.stackEnd?.rawValue ?? 0).littleEndian, toByteOffset: L.stackEnd, as: UInt64.self)
        r.storeBytes(of: UInt32(truncatingIfNeeded: userStackLength).littleEndian, toByteOffset: L.userStackLength, as: UInt32.self)
        r.storeBytes(of: s.comm.low.littleEndian, toByteOffset: L.comm, as: UInt64.self)
        r.storeBytes(of: s.comm.high.littleEndian, toByteOffset: L.comm + 8, as: UInt64.self)
        return r
    }

    /// Writes named addresses (``RawLocation``), in records of at most
    /// 4,096 locations each.
    public func writeLocations(_ locations: [RawLocation]) throws(CaptureError) {
        var start = 0
        while start < locations.count {
            let chunk = locations[start..<min(start + 4096, locations.count)]
            try record(.locations) { e in
                // u32 count, then per location: i32 pid, u64 generation, u64 address,
                // u8 flags (1 return address, 2 kernel), u8 kind, string module,
                // u64 module offset, u32 frame count, then per frame: string
                // function, string system name, string file, u32 line, u8 inlined.
                e.u32(UInt32(chunk.count))
                for l in chunk {
                    e.i32(l.key.pid)
                    e.u64(l.key.generation)
                    e.u64(l.key.address)
                    e.u8((l.key.isReturnAddress ? 1 : 0) | (l.key.isKernel ? 2 : 0))
                    e.u8(l.kind)
                    e.string(l.module)
                    e.u64(l.moduleOffset)
                    e.u32(UInt32(l.frames.count))
                    for f in l.frames {
                        e.string(f.function)
                        e.string(f.systemName)
                        e.string(f.file)
                        e.u32(f.line)
                        e.u8(f.isInlined ? 1 : 0)
                    }
                }
            }
            start += chunk.count
        }
    }

    /// Writes a record of any type. Readers that do not know `type` skip it;
    /// this is how a new record type is tried before it gets a number in
    /// ``RawRecordType``.
    public func writeRecord(type: RawRecordType, payload: [UInt8]) throws(CaptureError) {
        precondition(wroteMetadata, "RawFileWriter: writeMetadata must come first")
        var e = RawEncoder()
        e.u32(type.rawValue)
        e.u32(UInt32(payload.count))
        e.bytes.append(contentsOf: payload)
        try file.write(e.bytes)
    }

    /// Writes the stats record (with ``samplesWritten`` as counted here: the
    /// writer is the authority on what is in the file) and commits: the
    /// destination now holds the recording. Returns the file's size.
    @discardableResult
    public func finish(stats: RawStats) throws(CaptureError) -> UInt64 {
        precondition(wroteMetadata, "RawFileWriter: writeMetadata must come first")
        try record(.stats) { e in
            e.u64(samplesWritten)
            e.u64(stats.samplesLost)
            e.u64(stats.durationNanoseconds)
            e.string(stats.endReason)
            e.u32(UInt32(stats.counters.count))
            for (k, v) in stats.counters.sorted(by: { $0.key < $1.key }) { e.string(k); e.u64(v) }
        }
        try file.commit()
        return file.bytesWritten
    }

    /// Drops the recording: removes the temporary file, leaves the
    /// destination untouched. Also what happens when the writer is released
    /// without ``finish(stats:)``.
    public func abandon() { file.abandon() }

    /// Frames and writes one record encoded by `body` into the reused scratch
    /// encoder.
    private func record(_ type: RawRecordType, _ body: (inout RawEncoder) -> Void) throws(CaptureError) {
        precondition(wroteMetadata, "RawFileWriter: writeMetadata must come first")
        scratch.bytes.removeAll(keepingCapacity: true)
        scratch.u32(type.rawValue)
        scratch.u32(0)
        body(&scratch)
        let length = scratch.bytes.count - RawFrame.size
        precondition(length <= Int(UInt32.max), "\(type) record larger than 4 GiB")
        withUnsafeBytes(of: UInt32(length).littleEndian) { l in
            for i in 0..<4 { scratch.bytes[4 + i] = l[i] }
        }
        try file.write(scratch.bytes)
    }
}

/// Little-endian encoding into a byte array, for the records that are not
/// samples (rare: one per process, snapshot, file).
struct RawEncoder {
    var bytes: [UInt8] = []
    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u16(_ v: UInt16) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func i32(_ v: Int32) { u32(UInt32(bitPattern: v)) }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    /// u32 byte count, then the UTF-8 bytes (no NUL).
    mutating func string(_ s: String) {
        let n = s.utf8.count
        u32(UInt32(n))
        bytes.append(contentsOf: s.utf8)
    }
}
