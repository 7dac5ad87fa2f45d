import SprofBase

/// x86_64 registers the unwinder tracks from frame to frame. Callee-saved
/// registers other than rbp are not recovered: CFI never needs them to find
/// the CFA on code compilers emit, and the generic path gives up (truncates)
/// if one is needed.
public struct RegistersX86_64: Sendable, Equatable {
    public var ip: UInt64
    public var sp: UInt64
    public var bp: UInt64
    @inlinable public init(ip: UInt64, sp: UInt64, bp: UInt64) { self.ip = ip; self.sp = sp; self.bp = bp }
}

/// Why an unwind stopped. Only `.complete` means the stack is whole.
public enum UnwindStop: UInt8, Error, Sendable, CaseIterable, CustomStringConvertible {
    /// Reached the outermost frame (return address 0, or undefined in CFI).
    case complete = 0
    /// The next address lies in no executable mapping (JIT code, garbage).
    case outsideMappings
    /// The CFA did not increase: a loop or corrupt data.
    case cfaNotIncreasing
    /// 512 frames.
    case maxFrames
    /// A read fell outside the captured stack bytes (the copy was too short).
    case stackReadOutOfRange
    /// No CFI and no frame-pointer or return-address heuristic applied.
    case noUnwindInfo
    /// The binary could not be opened or parsed.
    case moduleUnavailable
    /// The CFI for this address could not be evaluated.
    case badCFI
    /// No user registers in the sample (kernel thread).
    case noUserRegisters

    public var isTruncated: Bool { self != .complete }
    public var description: String {
        switch self {
        case .complete: return "complete"
        case .outsideMappings: return "address outside every executable mapping"
        case .cfaNotIncreasing: return "CFA did not increase"
        case .maxFrames: return "512 frames"
        case .stackReadOutOfRange: return "read past the captured stack"
        case .noUnwindInfo: return "no unwind information"
        case .moduleUnavailable: return "binary unavailable"
        case .badCFI: return "CFI could not be evaluated"
        case .noUserRegisters: return "no user registers"
        }
    }
}

public struct UnwindOutcome: Sendable, Equatable {
    /// Frames written (the sampled ip first, then return addresses).
    public var frameCount: Int
    public var stop: UnwindStop
    public var isTruncated: Bool { stop.isTruncated }
}

/// The rule that applies at an address, and where it came from.
public struct CodeHit {
    public var rule: UnwindRuleX86_64
    /// Process address minus stated address in that binary.
    public var bias: UInt64
    /// Which executable mapping (for `module(slot:)`).
    public var slot: Int
}

/// Where the unwinder finds code for an address of one process: executable
/// mappings with their binary's compiled CFI and load bias.
public protocol CodeLookup {
    /// The rule for `address` (a process address), or nil if no executable
    /// mapping whose binary could be loaded contains it. Called per frame:
    /// must not allocate or touch reference counts.
    func lookup(_ address: UInt64) -> CodeHit?
    /// False if the address lies in no executable mapping at all (even one
    /// whose binary could not be loaded).
    func isExecutable(_ address: UInt64) -> Bool
    /// The module of a slot a `CodeHit` named (for the rare generic path).
    func module(slot: Int) -> UnwindModule?
    /// The module and bias for an address (for call-instruction checks).
    func module(containing address: UInt64) -> (module: UnwindModule, bias: UInt64)?
}

public enum UnwinderX86_64 {
    public static let maxFrames = 512
    /// Stack slots tried above sp for a return address when the innermost
    /// frame has no CFI (Swift -O thunks, hand-written assembly): enough for
    /// a few pushes before the call, few enough that a stale value is rare.
    public static let returnAddressScanSlots = 6

    /// Unwinds one sample. Writes up to `frames.count` addresses (the sampled
    /// ip, then return addresses) and says why it stopped. Allocates nothing.
    ///
    /// After the first frame, rules are looked up at `return address - 1`:
    /// the call instruction's last byte, inside the caller's FDE even when
    /// the call is the last instruction of a noreturn function.
    public static func unwind<Code: CodeLookup>(
        registers start: RegistersX86_64, stack: StackMemory, code: Code,
        into frames: UnsafeMutableBufferPointer<UInt64>
    ) -> UnwindOutcome {
        var regs = start
        var count = 0
        let limit = min(frames.count, maxFrames)
        guard limit > 0 else { return UnwindOutcome(frameCount: 0, stop: .maxFrames) }
        frames[0] = regs.ip
        count = 1
        var first = true
        // After a signal frame the ip is the interrupted instruction, not a return address.
        var exactIP = true
        while true {
            if regs.ip == 0 { return UnwindOutcome(frameCount: count - 1, stop: .complete) }
            let lookupAddress = exactIP ? regs.ip : regs.ip &- 1
            guard let hit = code.lookup(lookupAddress) else {
                let stop: UnwindStop = code.isExecutable(lookupAddress) ? .moduleUnavailable : .outsideMappings
                return UnwindOutcome(frameCount: count, stop: stop)
            }
            let rule = hit.rule
            let bias = hit.bias
            var next = regs
            var nextExact = false
            switch rule.kind {
            case .spOffset, .spOffsetBPSaved, .bpOffset, .bpOffsetBPSaved:
                // CFA = (sp or bp) + o; ip = *(CFA - 8); sp = CFA; bp = *(CFA + b) if saved.
                let base = rule.kind == .spOffset || rule.kind == .spOffsetBPSaved ? regs.sp : regs.bp
                let cfa = base &+ UInt64(bitPattern: Int64(rule.cfaOffset))
                guard let ra = stack.read(cfa &- 8) else { return UnwindOutcome(frameCount: count, stop: .stackReadOutOfRange) }
                if rule.kind == .spOffsetBPSaved || rule.kind == .bpOffsetBPSaved {
                    guard let bp = stack.read(cfa &+ UInt64(bitPattern: Int64(rule.bpOffset))) else {
                        return UnwindOutcome(frameCount: count, stop: .stackReadOutOfRange)
                    }
                    next.bp = bp
                }
                next.ip = ra
                next.sp = cfa
            case .endOfStack:
                return UnwindOutcome(frameCount: count, stop: .complete)
            case .generic:
                guard let module = code.module(slot: hit.slot) else { return UnwindOutcome(frameCount: count, stop: .moduleUnavailable) }
                switch module.genericStep(rule: rule, address: lookupAddress &- bias, bias: bias,
                                          registers: regs, stack: stack) {
                case .success(let r):
                    guard let r else { return UnwindOutcome(frameCount: count, stop: .complete) }
                    next = r.0
                    nextExact = r.exactIP
                case .failure(let stop):
                    return UnwindOutcome(frameCount: count, stop: stop)
                }
            case .noCFI:
                if first {
                    // The innermost frame may be code without CFI: find the
                    // return address in the first few slots above sp,
                    // accepting only an address just after a call.
                    var found = false
                    for slot in 0..<returnAddressScanSlots {
                        let at = regs.sp &+ UInt64(slot * 8)
                        guard let candidate = stack.read(at) else { break }
                        if followsCall(candidate, code: code) {
                            next.ip = candidate
                            next.sp = at &+ 8
                            found = true
                            break
                        }
                    }
                    if !found { return UnwindOutcome(frameCount: count, stop: .noUnwindInfo) }
                } else {
                    // Deeper in the stack: a frame-pointer step, if bp points
                    // into the captured stack above sp: (ip, sp, bp) = (*(bp+8), bp+16, *bp).
                    guard regs.bp >= regs.sp, regs.bp < stack.end,
                          let savedBP = stack.read(regs.bp), let ra = stack.read(regs.bp &+ 8),
                          followsCall(ra, code: code)
                    else { return UnwindOutcome(frameCount: count, stop: .noUnwindInfo) }
                    next = RegistersX86_64(ip: ra, sp: regs.bp &+ 16, bp: savedBP)
                }
            }
            guard next.sp > regs.sp else { return UnwindOutcome(frameCount: count, stop: .cfaNotIncreasing) }
            if next.ip == 0 { return UnwindOutcome(frameCount: count, stop: .complete) }
            guard count < limit else { return UnwindOutcome(frameCount: count, stop: .maxFrames) }
            frames[count] = next.ip
            count += 1
            regs = next
            first = false
            exactIP = nextExact
        }
    }

    /// Whether `address` is just after a call instruction in executable code:
    /// `call rel32` (E8 + 4 bytes) or `call r/m64` (FF /2: 2 to 7 bytes).
    /// Intel SDM vol. 2A, CALL.
    static func followsCall<Code: CodeLookup>(_ address: UInt64, code: Code) -> Bool {
        guard address > 8, let (module, bias) = code.module(containing: address &- 1) else { return false }
        return module.followsCall(statedAddress: address &- bias)
    }
}
