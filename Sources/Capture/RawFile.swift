import SprofBase

// The raw recording file of `sprof record`: what it holds and how it is laid
// out. docs/raw-format.md is the byte-by-byte description; this file and
// RawFileWriter.swift / RawFileReader.swift are its only implementation.
// Every integer is little-endian; nothing is aligned or padded.

/// `major.minor` of the raw format. A reader reads every minor version of
/// its own major (later minors only add record types, which it skips by
/// length); it refuses any other major.
public struct RawFormatVersion: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var major: UInt16
    public var minor: UInt16
    public init(major: UInt16, minor: UInt16) { self.major = major; self.minor = minor }
    /// What this build writes. 1.1 added the unwound-sample record (type 6).
    public static let current = RawFormatVersion(major: 1, minor: 2)
    public static func < (a: Self, b: Self) -> Bool { (a.major, a.minor) < (b.major, b.minor) }
    public var description: String { "\(major).\(minor)" }
}

/// The fixed file header (docs/raw-format.md, "Header").
enum RawHeader {
    /// "SPROFRAW": says what the file is to `file(1)`-style sniffing and
    /// to a human with `xxd`.
    static let magic: [UInt8] = Array("SPROFRAW".utf8)
    static let majorOffset = 8, minorOffset = 10, sizeOffset = 12, writerOffset = 16
    /// Room for a version like "0.12.3-dev+g1234abcd"; NUL-padded.
    static let writerLength = 32
    /// 48 in format 1.0. Stored in the header so a later minor version can
    /// append fields; readers start at `header size`, not at 48.
    static let size = 48
}

/// A record's type: the first u32 of its 8-byte frame. Numbers are never
/// reused; unknown ones are skipped by length.
public struct RawRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    public static let metadata = RawRecordType(rawValue: 1)
    public static let process = RawRecordType(rawValue: 2)
    public static let mappings = RawRecordType(rawValue: 3)
    public static let sample = RawRecordType(rawValue: 4)
    public static let stats = RawRecordType(rawValue: 5)
    /// A sample whose user stack was unwound at record time (format 1.1).
    public static let unwoundSample = RawRecordType(rawValue: 6)
    /// Named addresses, ``RawLocation`` (format 1.2).
    public static let locations = RawRecordType(rawValue: 7)
    public var description: String {
        switch rawValue {
        case 1: return "metadata"
        case 2: return "process"
        case 3: return "mappings"
        case 4: return "sample"
        case 5: return "stats"
        case 6: return "unwound sample"
        case 7: return "locations"
        default: return "type-\(rawValue)"
        }
    }
}

/// Record frame: u32 type, u32 payload length.
enum RawFrame {
    static let size = 8
}

/// The fixed part of a sample record's payload (docs/raw-format.md,
/// "Sample"), followed by the kernel frames and the user-stack bytes.
enum RawSampleLayout {
    static let kind = 0, kernelFrameCount = 2, flags = 4, tgid = 8, tid = 12, timeNs = 16
    static let cpu = 24, userStackRequested = 28, ip = 32, sp = 40, bp = 48, weight = 56
    static let stackEnd = 64, userStackLength = 72, comm = 76
    static let fixedSize = 92

    /// Payload bytes for a sample with these stack sizes.
    @inline(__always) static func payloadSize(kernelFrames: Int, userStack: Int) -> Int {
        fixedSize + kernelFrames * 8 + userStack
    }

    // The unwound-sample record (type 6, format 1.1): the same fixed part
    // (`userStackLength` then says how many stack bytes were copied and
    // unwound, not how many follow), the kernel frames, then this 4-byte
    // header, relative to its start, then the user frames (u64 each).
    static let userFrameCount = 0, unwindStop = 2, unwoundReserved = 3
    static let unwoundHeaderSize = 4
    /// A u16 in the record.
    static let maxUserFrames = Int(UInt16.max)

    /// Payload bytes for an unwound sample.
    @inline(__always) static func unwoundPayloadSize(kernelFrames: Int, userFrames: Int) -> Int {
        fixedSize + kernelFrames * 8 + unwoundHeaderSize + userFrames * 8
    }
}

/// The metadata record: written once, first. Describes the machine, the
/// clocks and the settings of the recording.
public struct RawMetadata: Hashable, Sendable {
    /// The sprof that recorded (also in the file header, truncated to 32 bytes).
    public var sprofVersion: String
    /// `uname -r` of the recording machine.
    public var kernelRelease: String
    public var hostname: String
    /// CLOCK_REALTIME at the start, nanoseconds since the Unix epoch.
    public var wallClockStartNanoseconds: UInt64
    /// CLOCK_MONOTONIC at the start, the clock of `RawSample.timeNanoseconds`
    /// (`bpf_ktime_get_ns`): sample time minus this is time into the recording.
    public var monotonicStartNanoseconds: UInt64
    /// Sampling frequency in Hz.
    public var frequency: UInt32
    /// User-stack bytes requested per sample.
    public var userStackSize: UInt32
    /// What was profiled, for humans: "pids 12,34", "all", "command ./a.out -x".
    public var target: String
    /// The BPF code paths in use (`CaptureVariants.names`: "ringbuf",
    /// "find_vma", "task_pt_regs", or their fallbacks).
    public var variants: [String]
    /// Anything else; written sorted by key.
    public var extra: [String: String]

    public init(sprofVersion: String, kernelRelease: String, hostname: String,
                wallClockStartNanoseconds: UInt64, monotonicStartNanoseconds: UInt64,
                frequency: UInt32, userStackSize: UInt32, target: String,
                variants: [String], extra: [String: String] = [:]) {
        self.sprofVersion = sprofVersion; self.kernelRelease = kernelRelease; self.hostname = hostname
        self.wallClockStartNanoseconds = wallClockStartNanoseconds
        self.monotonicStartNanoseconds = monotonicStartNanoseconds
        self.frequency = frequency; self.userStackSize = userStackSize; self.target = target
        self.variants = variants; self.extra = extra
    }
}

/// A process record: one per process seen, written before its first sample;
/// written again when more is known (it exited). The last record for a pid
/// is the one that counts.
public struct RawProcess: Hashable, Sendable {
    public var pid: Int32
    /// The command name (`comm`, at most 15 bytes in the kernel, but any
    /// length is stored).
    public var command: String
    /// `/proc/PID/exe` as read at the time; empty if it could not be read.
    public var executablePath: String
    /// The process had exited when the record was written.
    public var exited: Bool
    /// When it exited (CLOCK_MONOTONIC ns), if known.
    public var exitTimeNanoseconds: UInt64?

    public init(pid: Int32, command: String, executablePath: String, exited: Bool = false,
                exitTimeNanoseconds: UInt64? = nil) {
        self.pid = pid; self.command = command; self.executablePath = executablePath
        self.exited = exited || exitTimeNanoseconds != nil
        self.exitTimeNanoseconds = exitTimeNanoseconds
    }
}

/// A mapping-snapshot record: a process's whole `/proc/PID/maps` (with
/// build-ids) at one moment. A sample is unwound with the latest snapshot
/// of its tgid written before it in the file.
public struct RawMappingSnapshot: Hashable, Sendable {
    public var pid: Int32
    /// Increases each time the process's mappings were re-read (after an
    /// `exec`, or an address no mapping covered).
    public var generation: UInt64
    /// Sorted by start address.
    public var mappings: [Mapping]

    public init(pid: Int32, generation: UInt64, mappings: [Mapping]) {
        self.pid = pid; self.generation = generation
        self.mappings = mappings.isSorted { $0.start < $1.start } ? mappings : mappings.sorted { $0.start < $1.start }
    }

    /// The mapping containing `address`, by binary search (mappings do not
    /// overlap in `/proc/PID/maps`).
    public func mapping(containing address: ProcessAddress) -> Mapping? {
        var lo = 0, hi = mappings.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if mappings[mid].start <= address { lo = mid + 1 } else { hi = mid }
        }
        guard lo > 0, mappings[lo - 1].contains(address) else { return nil }
        return mappings[lo - 1]
    }
}

/// The stats record: written once, last, by ``RawFileWriter/finish(stats:)``.
/// A file without one was not finished (sprof was killed, or the copy is cut
/// short).
public struct RawStats: Hashable, Sendable {
    /// Sample records in the file, raw and unwound (the writer fills this in
    /// from its own count).
    public var samplesWritten: UInt64
    /// Samples lost before they reached the file: ring buffer full, queue
    /// overflow. The profile under-counts by this many.
    public var samplesLost: UInt64
    /// The BPF program's counters and other named counts; written sorted by name.
    public var counters: [String: UInt64]
    public var durationNanoseconds: UInt64
    /// Why the recording ended: "duration elapsed", "interrupted",
    /// "target exited", or an error's text.
    public var endReason: String

    public init(samplesWritten: UInt64 = 0, samplesLost: UInt64, counters: [String: UInt64] = [:],
                durationNanoseconds: UInt64, endReason: String) {
        self.samplesWritten = samplesWritten; self.samplesLost = samplesLost; self.counters = counters
        self.durationNanoseconds = durationNanoseconds; self.endReason = endReason
    }
}

extension Sequence {
    fileprivate func isSorted(by less: (Element, Element) -> Bool) -> Bool {
        var it = makeIterator()
        guard var prev = it.next() else { return true }
        while let x = it.next() {
            if less(x, prev) { return false }
            prev = x
        }
        return true
    }
}

/// What an address of the recording stands for, named at the end of the
/// recording while the binaries were certainly present (record type 7,
/// format 1.2), so that reporting needs no access to them. Capture only
/// stores these; the names come from the layer above (SprofSymbols), through
/// ``RecordingSymbolization``.
public struct RawLocation: Hashable, Sendable {
    /// Which address this names.
    public struct Key: Hashable, Sendable {
        /// 0 for a kernel address (kernel text is the same in every process).
        public var pid: Int32
        /// The mapping snapshot the address was seen with (0 for the kernel):
        /// after an exec the same address is other code.
        public var generation: UInt64
        public var address: UInt64
        /// A return address (every frame but a stack's innermost) is named
        /// from the byte before it, inside the call: the same address can
        /// name differently as an innermost frame.
        public var isReturnAddress: Bool
        public var isKernel: Bool
        public init(pid: Int32, generation: UInt64, address: UInt64, isReturnAddress: Bool, isKernel: Bool) {
            self.pid = pid; self.generation = generation; self.address = address
            self.isReturnAddress = isReturnAddress; self.isKernel = isKernel
        }
    }

    /// One function at the address; inlined ones first.
    public struct Frame: Hashable, Sendable {
        /// The name people read (demangled).
        public var function: String
        /// The name the binary states (mangled).
        public var systemName: String
        /// Empty when unknown.
        public var file: String
        /// 0 when unknown.
        public var line: UInt32
        public var isInlined: Bool
        public init(function: String, systemName: String, file: String, line: UInt32, isInlined: Bool) {
            self.function = function; self.systemName = systemName; self.file = file; self.line = line; self.isInlined = isInlined
        }
    }

    public var key: Key
    /// SprofSymbols' `SymbolizedLocation.Kind`: 0 file, 1 kernel, 2 JIT (perf map), 3 no mapping.
    public var kind: UInt8
    /// The file's path, `[kernel.kallsyms]`, `[MODULE]` or the mapping's name.
    public var module: String
    /// File offset (user), or the address (kernel).
    public var moduleOffset: UInt64
    /// Innermost first; never empty.
    public var frames: [Frame]

    public init(key: Key, kind: UInt8, module: String, moduleOffset: UInt64, frames: [Frame]) {
        self.key = key; self.kind = kind; self.module = module; self.moduleOffset = moduleOffset; self.frames = frames
    }
}

/// Names the addresses of a recording, provided by a layer above capture
/// (the CLI, with SprofSymbols), so capture knows nothing of symbols. Used on
/// the writer thread only.
public protocol RecordingSymbolization: AnyObject {
    /// A sample as it was written (its process, its kernel frames), its
    /// user frames (innermost first; empty when its stack was kept raw) and
    /// the mappings of `generation`.
    func note(_ sample: RawSample, generation: UInt64, mappings: [Mapping], userFrames: UnsafeBufferPointer<UInt64>)
    /// At the end of the recording, before the file is committed: names for
    /// every address noted. May take a while (files are read now).
    func locations() -> [RawLocation]
}
