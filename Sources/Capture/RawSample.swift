import CSprof
import SprofBase

/// What kind of event produced a sample (`enum sprof_kind` in bpf/include/sprof_abi.h).
public enum SampleKind: UInt16, Sendable {
    case cpu = 1
    case offCPU = 2
}

/// `enum sprof_sample_flags` in bpf/include/sprof_abi.h.
public struct SampleFlags: OptionSet, Hashable, Sendable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }
    /// The sample interrupted kernel code.
    public static let kernelMode = SampleFlags(rawValue: UInt32(SPROF_F_KERNEL_MODE.rawValue))
    /// `ip`, `sp`, `bp` are the task's user registers.
    public static let userRegisters = SampleFlags(rawValue: UInt32(SPROF_F_USER_REGS.rawValue))
    /// The user-stack copy stopped early at a page that could not be read.
    public static let userStackFault = SampleFlags(rawValue: UInt32(SPROF_F_USTACK_FAULT.rawValue))
    /// The copy reached the end of the stack mapping: the whole stack is there.
    public static let userStackToEnd = SampleFlags(rawValue: UInt32(SPROF_F_USTACK_TO_END.rawValue))
    public static let kernelStackError = SampleFlags(rawValue: UInt32(SPROF_F_KSTACK_ERR.rawValue))
    public static let viaFindVMA = SampleFlags(rawValue: UInt32(SPROF_F_VIA_FIND_VMA.rawValue))
    public static let viaSavedRegisters = SampleFlags(rawValue: UInt32(SPROF_F_VIA_SAVED_REGS.rawValue))
    public static let viaTaskPtRegs = SampleFlags(rawValue: UInt32(SPROF_F_TASK_PT_REGS.rawValue))
    /// Off-CPU: preempted, the thread stayed runnable (an involuntary wait).
    public static let offCPURunnable = SampleFlags(rawValue: UInt32(SPROF_F_OFFCPU_RUNNABLE.rawValue))
    /// Off-CPU: TASK_UNINTERRUPTIBLE (D state: disk I/O, some kernel locks).
    public static let offCPUUninterruptible = SampleFlags(rawValue: UInt32(SPROF_F_OFFCPU_UNINTERRUPTIBLE.rawValue))
    /// Off-CPU: the user stack was copied when the thread next ran, before any user code.
    public static let userStackDeferred = SampleFlags(rawValue: UInt32(SPROF_F_USTACK_DEFERRED.rawValue))
    /// Off-CPU: the thread ran user code before its stack could be copied: registers only.
    public static let userStackMissed = SampleFlags(rawValue: UInt32(SPROF_F_USTACK_MISSED.rawValue))
    /// Off-CPU: the wait was still going on when the recording stopped; its weight ends there.
    public static let offCPUOngoing = SampleFlags(rawValue: UInt32(SPROF_F_OFFCPU_ONGOING.rawValue))
}

/// A task's command name (`TASK_COMM_LEN` = 16 bytes, NUL-padded), stored
/// inline so decoding a sample allocates nothing for it.
public struct Comm: Hashable, Sendable, CustomStringConvertible {
    public var low: UInt64
    public var high: UInt64
    public init(low: UInt64, high: UInt64) { self.low = low; self.high = high }
    public init(_ string: String) {
        var bytes = [UInt8](repeating: 0, count: 16)
        for (i, b) in string.utf8.prefix(15).enumerated() { bytes[i] = b }
        low = 0; high = 0
        for i in 0..<8 { low |= UInt64(bytes[i]) << (8 * i); high |= UInt64(bytes[8 + i]) << (8 * i) }
    }
    public var description: String {
        var bytes: [UInt8] = []
        for i in 0..<16 {
            let b = UInt8(truncatingIfNeeded: (i < 8 ? low >> (8 * i) : high >> (8 * (i - 8))))
            if b == 0 { break }
            bytes.append(b)
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// One sample as the BPF program captured it: registers, the kernel stack and
/// a copy of the user stack from `sp` upwards — or, for an *unwound* sample
/// (``isUnwound``), the user stack already unwound at record time into return
/// addresses. A value type; the only heap storage is `stackBytes` (kernel
/// frames, then user-stack bytes or user frames).
public struct RawSample: Sendable {
    public var kind: SampleKind
    public var flags: SampleFlags
    public var tgid: Int32
    public var tid: Int32
    /// CLOCK_MONOTONIC nanoseconds (`bpf_ktime_get_ns`).
    public var timeNanoseconds: UInt64
    public var cpu: UInt32
    public var comm: Comm
    /// User registers; valid when `flags` contains `.userRegisters`.
    public var ip: ProcessAddress
    public var sp: ProcessAddress
    public var bp: ProcessAddress
    /// Off-CPU: nanoseconds blocked. On-CPU: 0.
    public var weight: UInt64
    /// End of the stack mapping, when the kernel could tell (`bpf_find_vma`).
    public var stackEnd: ProcessAddress?
    /// User-stack bytes the settings asked for.
    public var userStackRequested: UInt32
    /// Number of kernel frames at the front of `stackBytes` (8 bytes each).
    public var kernelFrameCount: Int
    /// Kernel return addresses (8 bytes each, innermost first), then the user
    /// stack copy from `sp` — or, for an unwound sample, the user frames.
    public var stackBytes: [UInt8]
    /// Set when the user stack was unwound at record time: `stackBytes` then holds the kernel frames followed by
    /// `userFrameCount` user frames (8 bytes each, little-endian, innermost first: the sampled ip, then return addresses)
    /// instead of user-stack bytes, and `unwindStop` says why the unwind stopped (0 = complete, the stack is whole; any
    /// other value = truncated; values are SprofUnwind's `UnwindStop` raw values, opaque to Capture).
    ///
    /// nil: a raw sample (the user-stack bytes are present). ``userStack`` and ``userStackCount`` are empty for
    /// unwound samples.
    public var userFrameCount: Int? = nil
    /// Why the record-time unwind stopped; meaningful only when ``userFrameCount`` is set (0 otherwise).
    public var unwindStop: UInt8 = 0
    /// Unwound samples: user-stack bytes the kernel had copied, which the unwind read and the file does not keep
    /// (diagnostics: a truncated unwind over a short copy wants a larger `--stack-size`). See
    /// ``capturedUserStackCount``.
    var unwoundFromUserStackCount = 0

    public init(kind: SampleKind, flags: SampleFlags, tgid: Int32, tid: Int32, timeNanoseconds: UInt64,
                cpu: UInt32, comm: Comm, ip: ProcessAddress, sp: ProcessAddress, bp: ProcessAddress,
                weight: UInt64, stackEnd: ProcessAddress?, userStackRequested: UInt32,
                kernelStack: [KernelAddress], userStack: [UInt8]) {
        self.kind = kind; self.flags = flags; self.tgid = tgid; self.tid = tid
        self.timeNanoseconds = timeNanoseconds; self.cpu = cpu; self.comm = comm
        self.ip = ip; self.sp = sp; self.bp = bp; self.weight = weight; self.stackEnd = stackEnd
        self.userStackRequested = userStackRequested
        kernelFrameCount = kernelStack.count
        var bytes = [UInt8]()
        bytes.reserveCapacity(kernelStack.count * 8 + userStack.count)
        for a in kernelStack { withUnsafeBytes(of: a.rawValue.littleEndian) { bytes.append(contentsOf: $0) } }
        bytes.append(contentsOf: userStack)
        stackBytes = bytes
    }

    /// An unwound sample: `userFrames` (innermost first: the sampled ip, then
    /// return addresses) in place of the user-stack bytes. `unwindStop` is
    /// SprofUnwind's `UnwindStop` raw value (0 = complete);
    /// `capturedUserStackCount` the user-stack bytes the unwind had read.
    public init(kind: SampleKind, flags: SampleFlags, tgid: Int32, tid: Int32, timeNanoseconds: UInt64,
                cpu: UInt32, comm: Comm, ip: ProcessAddress, sp: ProcessAddress, bp: ProcessAddress,
                weight: UInt64, stackEnd: ProcessAddress?, userStackRequested: UInt32,
                kernelStack: [KernelAddress], userFrames: [ProcessAddress], unwindStop: UInt8,
                capturedUserStackCount: Int = 0) {
        self.init(kind: kind, flags: flags, tgid: tgid, tid: tid, timeNanoseconds: timeNanoseconds, cpu: cpu,
                  comm: comm, ip: ip, sp: sp, bp: bp, weight: weight, stackEnd: stackEnd,
                  userStackRequested: userStackRequested, kernelStack: kernelStack, userStack: [])
        stackBytes.reserveCapacity(kernelStack.count * 8 + userFrames.count * 8)
        for a in userFrames { withUnsafeBytes(of: a.rawValue.littleEndian) { stackBytes.append(contentsOf: $0) } }
        userFrameCount = userFrames.count
        self.unwindStop = unwindStop
        unwoundFromUserStackCount = capturedUserStackCount
    }

    /// Kernel return addresses, innermost first.
    public var kernelStack: [KernelAddress] {
        (0..<kernelFrameCount).map { kernelFrame($0) }
    }

    @inlinable public func kernelFrame(_ i: Int) -> KernelAddress {
        stackBytes.withUnsafeBytes { KernelAddress(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self))) }
    }

    /// Bytes copied from the user stack, starting at `sp`; empty for an
    /// unwound sample.
    public var userStack: ArraySlice<UInt8> {
        userFrameCount == nil ? stackBytes[(kernelFrameCount * 8)...] : stackBytes[stackBytes.endIndex...]
    }
    /// `userStack.count`: 0 for an unwound sample.
    public var userStackCount: Int { userFrameCount == nil ? stackBytes.count - kernelFrameCount * 8 : 0 }

    /// The user stack was unwound at record time: ``userFrames`` instead of
    /// ``userStack``.
    public var isUnwound: Bool { userFrameCount != nil }

    /// User frame `i` of an unwound sample (`i < userFrameCount`): 0 is the
    /// sampled ip, then return addresses, outwards.
    @inlinable public func userFrame(_ i: Int) -> ProcessAddress {
        stackBytes.withUnsafeBytes {
            ProcessAddress(UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: (kernelFrameCount + i) * 8, as: UInt64.self)))
        }
    }

    /// All user frames of an unwound sample, innermost first; empty for a raw
    /// sample. Allocates: prefer ``userFrame(_:)`` per sample.
    public var userFrames: [ProcessAddress] {
        (0..<(userFrameCount ?? 0)).map { userFrame($0) }
    }

    /// User-stack bytes the kernel copied for this sample: ``userStackCount``
    /// for a raw sample; for an unwound one, what the unwind had to work with
    /// (the record's user-stack length, kept for diagnostics).
    public var capturedUserStackCount: Int { userFrameCount == nil ? userStackCount : unwoundFromUserStackCount }
}

/// Decoding of `struct sprof_sample` records (bpf/include/sprof_abi.h).
/// Offsets are written out here and checked against the C compiler's
/// `offsetof()` by ABITests.
public enum SampleLayout {
    public static let kind = 0, abiVersion = 2, flags = 4, tgid = 8, tid = 12, timeNs = 16
    public static let cpu = 24, kstackLen = 28, ip = 32, sp = 40, bp = 48, weight = 56
    public static let stackEnd = 64, ustackLen = 72, ustackReq = 76, comm = 80, kstack = 96
    public static let ustack = Int(SPROF_SAMPLE_HDR_SIZE)
    public static let maxKernelFrames = Int(SPROF_KSTACK_MAX)
    public static let maxUserStack = Int(SPROF_USTACK_MAX)
}

extension RawSample {
    /// Decodes one record as emitted by the BPF program. Allocates only the
    /// stack bytes.
    public init(record: UnsafeRawBufferPointer) throws(CaptureError) {
        guard record.count >= SampleLayout.ustack else { throw .sampleTooShort(bytes: record.count) }
        func u16(_ o: Int) -> UInt16 { UInt16(littleEndian: record.loadUnaligned(fromByteOffset: o, as: UInt16.self)) }
        func u32(_ o: Int) -> UInt32 { UInt32(littleEndian: record.loadUnaligned(fromByteOffset: o, as: UInt32.self)) }
        func u64(_ o: Int) -> UInt64 { UInt64(littleEndian: record.loadUnaligned(fromByteOffset: o, as: UInt64.self)) }
        let version = u16(SampleLayout.abiVersion)
        guard version == UInt16(SPROF_ABI_VERSION) else { throw .sampleABIMismatch(found: version) }
        guard let kind = SampleKind(rawValue: u16(SampleLayout.kind)) else { throw .sampleBadKind(u16(SampleLayout.kind)) }
        let klen = Int(u32(SampleLayout.kstackLen))
        let ulen = Int(u32(SampleLayout.ustackLen))
        guard klen % 8 == 0, klen <= SampleLayout.maxKernelFrames * 8, ulen <= SampleLayout.maxUserStack,
              SampleLayout.ustack + ulen <= record.count
        else { throw .sampleLengthsInconsistent(record: record.count, kstack: klen, ustack: ulen) }
        self.kind = kind
        flags = SampleFlags(rawValue: u32(SampleLayout.flags))
        tgid = Int32(bitPattern: u32(SampleLayout.tgid))
        tid = Int32(bitPattern: u32(SampleLayout.tid))
        timeNanoseconds = u64(SampleLayout.timeNs)
        cpu = u32(SampleLayout.cpu)
        comm = Comm(low: u64(SampleLayout.comm), high: u64(SampleLayout.comm + 8))
        ip = ProcessAddress(u64(SampleLayout.ip))
        sp = ProcessAddress(u64(SampleLayout.sp))
        bp = ProcessAddress(u64(SampleLayout.bp))
        weight = u64(SampleLayout.weight)
        let end = u64(SampleLayout.stackEnd)
        stackEnd = end == 0 ? nil : ProcessAddress(end)
        userStackRequested = u32(SampleLayout.ustackReq)
        kernelFrameCount = klen / 8
        stackBytes = [UInt8](unsafeUninitializedCapacity: klen + ulen) { buf, count in
            let base = buf.baseAddress!
            if klen > 0 { base.initialize(from: record.baseAddress!.advanced(by: SampleLayout.kstack).assumingMemoryBound(to: UInt8.self), count: klen) }
            if ulen > 0 { (base + klen).initialize(from: record.baseAddress!.advanced(by: SampleLayout.ustack).assumingMemoryBound(to: UInt8.self), count: ulen) }
            count = klen + ulen
        }
    }
}
