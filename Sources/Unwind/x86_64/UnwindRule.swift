/// A compiled unwind rule for a range of x86_64 code: how to get the caller's
/// registers `(ip, sp, bp)` from the callee's, given 8-byte reads `*a` from
/// the captured stack. CFI is translated into these at table-build time
/// (framehop's idea); whatever does not fit one of the common shapes becomes
/// `.generic` and is evaluated from the CFI at unwind time.
///
/// In every shape the return address is at `CFA - 8` (the `call` pushed it
/// just below the caller's stack pointer) and the caller's `sp` is the CFA
/// (System V AMD64 psABI §3.2.2 and the CFI its compilers emit).
///
/// 8 bytes, so a table row (start address + rule) is 16 and a rule cache slot
/// is cheap to copy.
public struct UnwindRuleX86_64: Hashable, Sendable, CustomStringConvertible {
    public enum Kind: UInt8, Sendable {
        /// No CFI covers this address (a gap between FDEs, or no FDE at all).
        case noCFI = 0
        /// `(ip, sp, bp) = (*(sp + o - 8), sp + o, bp)`: CFA = sp + o, bp not saved.
        case spOffset
        /// `(ip, sp, bp) = (*(sp + o - 8), sp + o, *(sp + o + b))`: CFA = sp + o, bp saved at CFA + b.
        case spOffsetBPSaved
        /// `(ip, sp, bp) = (*(bp + o - 8), bp + o, bp)`: CFA = bp + o, bp not saved.
        case bpOffset
        /// `(ip, sp, bp) = (*(bp + o - 8), bp + o, *(bp + o + b))`: CFA = bp + o, bp saved at CFA + b
        /// (the frame-pointer prologue: o = 16, b = -16).
        case bpOffsetBPSaved
        /// The return address is undefined (`DW_CFA_undefined rip`): the outermost
        /// frame (`_start`, `clone3`); the stack is complete here.
        case endOfStack
        /// Anything else (CFA or registers by expression, signal frames, a CFA
        /// from another register): evaluate the FDE's CFI at this address.
        case generic
    }

    public var kind: Kind
    /// `b` of the formulas: where bp was saved, relative to the CFA.
    public var bpOffset: Int16
    /// `o` of the formulas; for `.generic`, the FDE's offset in its section.
    public var operand: Int32

    @inlinable public init(kind: Kind, cfaOffset: Int32 = 0, bpOffset: Int16 = 0) {
        self.kind = kind
        self.operand = cfaOffset
        self.bpOffset = bpOffset
    }

    public static let noCFI = UnwindRuleX86_64(kind: .noCFI)
    public static let endOfStack = UnwindRuleX86_64(kind: .endOfStack)
    public static func generic(fdeOffset: Int32) -> UnwindRuleX86_64 { UnwindRuleX86_64(kind: .generic, cfaOffset: fdeOffset) }

    public var cfaOffset: Int32 { operand }

    public var description: String {
        switch kind {
        case .noCFI: return "no CFI"
        case .spOffset: return "CFA=sp+\(operand)"
        case .spOffsetBPSaved: return "CFA=sp+\(operand) bp=*(CFA\(bpOffset))"
        case .bpOffset: return "CFA=bp+\(operand)"
        case .bpOffsetBPSaved: return "CFA=bp+\(operand) bp=*(CFA\(bpOffset))"
        case .endOfStack: return "end of stack"
        case .generic: return "generic (FDE at \(operand))"
        }
    }
}
