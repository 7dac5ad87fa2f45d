internal import CUnwindOracle
import SprofBase
import SprofCapture

/// Why libunwind's walk of one sample stopped.
///
/// "ip" in a case is the address libunwind looked up: the sample's `ip` for
/// the first frame, a return address minus one after (the call instruction's
/// last byte, so the lookup lands in the caller even after a noreturn call).
public enum OracleStop: Hashable, Sendable, CustomStringConvertible {
    /// The CFI marks the outermost frame: its return-address column is
    /// undefined (`DW_CFA_undefined rip`, as glibc's `_start` and `clone`
    /// have), or rbp's rule is. The stack is whole.
    case endOfStack
    /// A step gave the return address 0, the other common end-of-stack
    /// marker. The stack is whole; 0 is not reported as a frame.
    case zeroReturnAddress
    /// The frame limit was reached; there may be more frames.
    case frameLimit(Int)
    /// The sample has no user registers (it interrupted the kernel with no
    /// user context, e.g. a kernel thread).
    case noUserRegisters
    /// `ip` is in no mapping.
    case noMapping(ip: ProcessAddress)
    /// `ip` is in a mapping whose bytes were not given (`openFile` returned
    /// nil, or the mapping is anonymous: JIT code).
    case noFile(ip: ProcessAddress, mapping: String)
    /// The file for `ip`'s mapping could not be used.
    case unusableFile(ip: ProcessAddress, reason: String)
    /// The file has no CFI for `ip`. Unless the unwinder was made with
    /// `allowFrameChainHeuristics`, libunwind is not let to guess.
    case noUnwindInfo(ip: ProcessAddress, reason: String)
    /// The CFI asked for stack memory the sample did not capture (the copy
    /// is shorter than the stack, or a rule points below sp).
    case readOutsideStack(address: ProcessAddress, captured: Int)
    /// The CFI asked for memory in a mapping whose bytes were not given.
    case readWithoutBytes(address: ProcessAddress, mapping: String, reason: String)
    /// The CFI asked for memory in no mapping.
    case readUnmapped(address: ProcessAddress)
    /// The CFI needs a register the sample does not have (only ip, sp and bp
    /// are captured).
    case unknownRegister(String)
    /// libunwind gave up for a reason of its own (`UNW_E*`: bad frame, ip and
    /// CFA unchanged, a CIE it cannot parse, ...).
    case libunwind(code: Int32, message: String)

    /// The walk reached the outermost frame.
    public var isComplete: Bool {
        switch self {
        case .endOfStack, .zeroReturnAddress: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .endOfStack: return "end of stack (the CFI marks the outermost frame)"
        case .zeroReturnAddress: return "end of stack (return address 0)"
        case .frameLimit(let n): return "stopped at the \(n)-frame limit"
        case .noUserRegisters: return "the sample has no user registers"
        case .noMapping(let ip): return "no mapping contains ip \(ip)"
        case .noFile(let ip, let m):
            return "no file to read for ip \(ip) in mapping \(m.isEmpty ? "(anonymous)" : m)"
        case .unusableFile(let ip, let why): return "cannot use the file for ip \(ip): \(why)"
        case .noUnwindInfo(let ip, let why): return "no unwind info at ip \(ip): \(why)"
        case .readOutsideStack(let a, let n):
            return "read outside the captured stack at \(a) (\(n) bytes were captured)"
        case .readWithoutBytes(let a, let m, let why):
            return "read at \(a) in mapping \(m.isEmpty ? "(anonymous)" : m), which has no bytes to give: \(why)"
        case .readUnmapped(let a): return "read at \(a), which is in no mapping"
        case .unknownRegister(let r): return "the CFI needs register \(r), which samples do not capture"
        case .libunwind(let code, let message): return "libunwind error \(code): \(message)"
        }
    }
}

/// What libunwind made of one sample.
public struct OracleResult: Equatable, Sendable {
    /// The sample's ip, then each caller's return address as read from the
    /// stack (not minus one), innermost first.
    public var frames: [ProcessAddress]
    public var stop: OracleStop
    /// Steps libunwind took by guessing (frame pointers, PLT patterns) for
    /// lack of CFI; always 0 unless `allowFrameChainHeuristics`.
    public var heuristicSteps: Int
    /// Why the walk stopped, when it did not reach the outermost frame.
    public var error: String? { stop.isComplete ? nil : stop.description }
}

/// libunwind's remote DWARF unwinder (the one `perf --call-graph dwarf` uses)
/// over a captured sample, offline: the oracle for differential tests of
/// sprof's own unwinder.
///
/// As perf's `unwind-libunwind-local.c` does, it gives libunwind an address
/// space whose memory is the sample's stack copy (for `[sp, sp + count)`) and
/// the bytes of the ELF files behind the mappings (translated through each
/// mapping's start and file offset), whose registers are the sample's ip, sp
/// and bp, and whose unwind tables are the files' `.eh_frame_hdr` search
/// tables. Files are mapped once, by path, and kept for the unwinder's life.
///
/// libunwind caches the CFI rules it used by ip (as under perf), so repeated
/// stacks are cheap (about 6 µs for a 7-frame sample, 30 µs uncached); the
/// cache is flushed whenever the mappings change.
///
/// Not thread-safe: use one unwinder per thread.
///
/// Limits: no `.debug_frame` (Debian's libunwind is built without it), only
/// the three captured registers, x86-64 only.
public final class LibunwindUnwinder {
    /// Frames per sample: where sprof's own unwinder stops too, so the two
    /// compare frame for frame.
    public static let frameLimit = 512

    /// What `openFile` returns for a `[vdso]` mapping to read it from this
    /// process's own vDSO: right only for samples recorded on this machine
    /// since it last booted.
    public static let ownVDSO = "\u{1}own-vdso"

    /// The file behind a mapping as this machine has it now: the mapping's
    /// own path (not deleted), our vDSO for `[vdso]`, nothing otherwise.
    public static func filesOnThisMachine(_ mapping: Mapping) -> String? {
        if mapping.path == "[vdso]" { return ownVDSO }
        return mapping.isFile && !mapping.isDeletedFile ? mapping.path : nil
    }

    private let handle: OpaquePointer
    public let allowFrameChainHeuristics: Bool
    /// The mappings installed in the C address space, to skip reinstalling
    /// them for consecutive samples of one snapshot.
    private var installed: [Mapping]?
    private var scratch = [UInt64](repeating: 0, count: LibunwindUnwinder.frameLimit)

    /// - Parameter allowFrameChainHeuristics: where there is no CFI, let
    ///   libunwind guess (frame pointers, PLT stubs) as it does under perf.
    ///   Off, the walk stops there with ``OracleStop/noUnwindInfo(ip:reason:)``.
    public init(allowFrameChainHeuristics: Bool = false) {
        guard let h = sprof_uo_create(allowFrameChainHeuristics ? 1 : 0) else {
            fatalError("LibunwindUnwinder: out of memory creating a libunwind address space")
        }
        handle = h
        self.allowFrameChainHeuristics = allowFrameChainHeuristics
    }

    deinit { sprof_uo_destroy(handle) }

    /// ELF files mapped so far.
    public var cachedFileCount: Int { sprof_uo_cached_file_count(handle) }

    /// Unwinds one sample.
    ///
    /// - Parameters:
    ///   - mappings: the process's mappings when the sample was taken.
    ///   - openFile: the path to read a mapping's ELF file from (the
    ///     recorded path, `/proc/PID/root` + path, a copy found by build-id),
    ///     ``ownVDSO``, or nil for none. Asked only when `mappings` differ
    ///     from the previous call's, for each mapping with a path.
    public func unwind(sample: RawSample, mappings: [Mapping],
                       openFile: (Mapping) -> String? = LibunwindUnwinder.filesOnThisMachine) -> OracleResult {
        guard sample.flags.contains(.userRegisters) else {
            return OracleResult(frames: [], stop: .noUserRegisters, heuristicSteps: 0)
        }
        install(mappings, openFile: openFile)
        var result = sprof_uo_result()
        let count = sample.stackBytes.withUnsafeBufferPointer { bytes in
            let userStart = sample.kernelFrameCount * 8
            var s = sprof_uo_sample(ip: sample.ip.rawValue, sp: sample.sp.rawValue, bp: sample.bp.rawValue,
                                    stack: bytes.baseAddress.map { $0 + userStart },
                                    stack_length: bytes.count - userStart)
            return scratch.withUnsafeMutableBufferPointer { frames in
                sprof_uo_unwind(handle, &s, frames.baseAddress, frames.count, &result)
            }
        }
        let frames = scratch[..<count].map { ProcessAddress($0) }
        return OracleResult(frames: frames, stop: stop(of: result, mappings: mappings, sample: sample),
                            heuristicSteps: Int(result.heuristic_steps))
    }

    /// Unwinds a sample with the snapshot ``RawFileReader/forEachSample(pid:_:)``
    /// gives it (none: no mappings, so the walk stops at the first lookup).
    public func unwind(sample: RawSample, snapshot: RawMappingSnapshot?,
                       openFile: (Mapping) -> String? = LibunwindUnwinder.filesOnThisMachine) -> OracleResult {
        unwind(sample: sample, mappings: snapshot?.mappings ?? [], openFile: openFile)
    }

    // MARK: - C interop

    private func install(_ mappings: [Mapping], openFile: (Mapping) -> String?) {
        if let installed, installed == mappings { return }
        // All paths in one buffer of NUL-terminated strings, so one
        // allocation keeps them alive while C copies them.
        var sources = [UInt32](repeating: UInt32(SPROF_UO_SOURCE_NONE.rawValue), count: mappings.count)
        var offsets = [Int](repeating: -1, count: mappings.count)
        var blob: [CChar] = []
        for (i, m) in mappings.enumerated() where !m.path.isEmpty {
            guard let path = openFile(m) else { continue }
            if path == Self.ownVDSO {
                sources[i] = UInt32(SPROF_UO_SOURCE_OWN_VDSO.rawValue)
            } else {
                sources[i] = UInt32(SPROF_UO_SOURCE_FILE.rawValue)
                offsets[i] = blob.count
                blob.append(contentsOf: path.utf8CString)
            }
        }
        let status = blob.withUnsafeBufferPointer { names -> Int32 in
            let c = mappings.indices.map { i -> sprof_uo_mapping in
                let m = mappings[i]
                var permissions: UInt32 = 0
                if m.permissions.contains(.read) { permissions |= UInt32(SPROF_UO_MAP_READ) }
                if m.permissions.contains(.write) { permissions |= UInt32(SPROF_UO_MAP_WRITE) }
                if m.permissions.contains(.execute) { permissions |= UInt32(SPROF_UO_MAP_EXEC) }
                return sprof_uo_mapping(start: m.start.rawValue, end: m.end.rawValue,
                                        file_offset: m.fileOffset.rawValue, permissions: permissions,
                                        source: sources[i],
                                        path: offsets[i] >= 0 ? names.baseAddress! + offsets[i] : nil)
            }
            return c.withUnsafeBufferPointer { sprof_uo_set_mappings(handle, $0.baseAddress, $0.count) }
        }
        guard status == 0 else {
            fatalError("LibunwindUnwinder: out of memory copying \(mappings.count) mappings")
        }
        installed = mappings
    }

    private func stop(of r: sprof_uo_result, mappings: [Mapping], sample: RawSample) -> OracleStop {
        let address = ProcessAddress(r.address)
        let mapping = r.mapping_index >= 0 && Int(r.mapping_index) < mappings.count
            ? mappings[Int(r.mapping_index)].path : ""
        let detail = withUnsafeBytes(of: r.detail) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        switch sprof_uo_stop(rawValue: r.stop) {
        case SPROF_UO_STOP_END_OF_STACK: return .endOfStack
        case SPROF_UO_STOP_ZERO_RETURN_ADDRESS: return .zeroReturnAddress
        case SPROF_UO_STOP_FRAME_LIMIT: return .frameLimit(Self.frameLimit)
        case SPROF_UO_STOP_NO_MAPPING: return .noMapping(ip: address)
        case SPROF_UO_STOP_NO_FILE: return .noFile(ip: address, mapping: mapping)
        case SPROF_UO_STOP_BAD_FILE: return .unusableFile(ip: address, reason: detail)
        case SPROF_UO_STOP_NO_UNWIND_INFO: return .noUnwindInfo(ip: address, reason: detail)
        case SPROF_UO_STOP_READ_OUTSIDE_STACK: return .readOutsideStack(address: address, captured: sample.userStackCount)
        case SPROF_UO_STOP_READ_NO_BYTES: return .readWithoutBytes(address: address, mapping: mapping, reason: detail)
        case SPROF_UO_STOP_READ_UNMAPPED: return .readUnmapped(address: address)
        case SPROF_UO_STOP_UNKNOWN_REGISTER: return .unknownRegister(Self.registerName(r.register_number))
        default: return .libunwind(code: r.unw_code, message: detail)
        }
    }

    /// libunwind's x86-64 register numbers (`UNW_X86_64_*` in
    /// libunwind-x86_64.h): the DWARF order for the first 17.
    private static func registerName(_ n: Int32) -> String {
        let names = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                     "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"]
        return n >= 0 && Int(n) < names.count ? names[Int(n)] : "#\(n)"
    }
}

/// One C address space and its caches, used from one thread at a time.
@available(*, unavailable)
extension LibunwindUnwinder: Sendable {}
