import SprofBase

/// Where a CFI value was read from, for error messages.
public enum CFISectionKind: UInt8, Hashable, Sendable, CustomStringConvertible {
    /// `.eh_frame` (LSB "Exception Frames"): loaded, pointer-encoded, CIE id 0.
    case ehFrame
    /// `.debug_frame` (DWARF 5 §6.4.1): not loaded, absolute addresses, CIE id all ones.
    case debugFrame
    /// `.eh_frame_hdr` (LSB "Exception Frames", `.eh_frame_hdr`): the binary-search table.
    case ehFrameHeader
    /// A DWARF expression given as bare bytes, not read from a section.
    case expression

    public var description: String {
        switch self {
        case .ehFrame: return ".eh_frame"
        case .debugFrame: return ".debug_frame"
        case .ehFrameHeader: return ".eh_frame_hdr"
        case .expression: return "expression"
        }
    }
}

/// Everything that can go wrong reading call-frame information: the one error
/// type of the CFI part of SprofUnwind (`.eh_frame`, `.debug_frame`,
/// `.eh_frame_hdr`, CFA programs and DWARF expressions).
///
/// Every case names the section and the byte offset in it where the problem
/// was found, so a message can be checked with `readelf -wf` or
/// `xxd -s OFFSET`. None of them is a program bug: all come from the bytes of
/// a binary (corrupt, truncated, or using a feature not implemented here) or,
/// for the expression cases, from the state of the unwound process.
public enum CFIError: Error, Hashable, Sendable, CustomStringConvertible {
    // MARK: Reading bytes
    /// `needed` bytes were wanted at `offset` but the entry (or section) ends at `limit`.
    case truncated(section: CFISectionKind, offset: Int, needed: Int, limit: Int)
    /// A LEB128 number at `offset` does not fit in 64 bits (DWARF 5 §7.6).
    case leb128Overflow(section: CFISectionKind, offset: Int)
    /// A section larger than 4 GiB (offsets inside rows are 32-bit).
    case sectionTooLarge(section: CFISectionKind, size: Int)
    /// `offset` is not inside the section.
    case offsetOutOfBounds(section: CFISectionKind, offset: Int, size: Int)

    // MARK: Entries
    /// An entry's length runs past the end of the section.
    case lengthOutOfBounds(section: CFISectionKind, offset: Int, length: UInt64, size: Int)
    /// An initial length in 0xfffffff0–0xfffffffe, reserved by DWARF 5 §7.4.
    case reservedLength(section: CFISectionKind, offset: Int, value: UInt32)
    /// An FDE's CIE pointer does not point at the start of a CIE in the section.
    case badCIEPointer(section: CFISectionKind, offset: Int, pointer: UInt64)
    /// The entry at `offset` is an FDE where a CIE was needed, or a CIE
    /// where an FDE was needed.
    case wrongEntryKind(section: CFISectionKind, offset: Int, expectedCIE: Bool)
    /// The zero terminator (a length of 0) where an entry was needed.
    case terminator(section: CFISectionKind, offset: Int)
    /// A CIE (or `.eh_frame_hdr`) version this reader does not know.
    case unsupportedVersion(section: CFISectionKind, offset: Int, version: UInt8)
    /// A CIE augmentation character this reader does not know: the rest of
    /// the CIE cannot be interpreted (DWARF 5 §6.4.1, "augmentation").
    case unknownAugmentation(section: CFISectionKind, offset: Int, character: UInt8)
    /// An address size or segment selector size that cannot be right.
    case badAddressSize(section: CFISectionKind, offset: Int, size: UInt8)
    /// A `DW_EH_PE_*` byte that is not a valid pointer encoding, or one that
    /// cannot be used where it appears (e.g. indirect FDE initial location).
    case badPointerEncoding(section: CFISectionKind, offset: Int, encoding: UInt8)
    /// A pointer relative to a base (text, data, function) the caller did not give.
    case missingPointerBase(section: CFISectionKind, offset: Int, encoding: UInt8)
    /// initial_location + address_range (or an advance) overflows 64 bits.
    case addressOverflow(section: CFISectionKind, offset: Int)
    /// `.eh_frame_hdr`'s FDE count cannot fit in the section.
    case tableTooLarge(section: CFISectionKind, offset: Int, count: UInt64)

    // MARK: CFA programs (DWARF 5 §6.4.2)
    /// An opcode that is not a `DW_CFA_*` instruction (or one not supported,
    /// such as `DW_CFA_GNU_window_save`, which is for SPARC).
    case unknownInstruction(section: CFISectionKind, offset: Int, opcode: UInt8)
    /// An instruction that is not allowed in a CIE's initial instructions
    /// (`advance_loc`, `set_loc`, `restore`).
    case invalidInCIE(section: CFISectionKind, offset: Int, opcode: UInt8)
    /// `DW_CFA_set_loc` to an address before the current location (DWARF 5
    /// §6.4.2.1: "the new location value is always greater than the current one").
    case locationBackwards(section: CFISectionKind, offset: Int, from: StatedAddress, to: StatedAddress)
    /// `DW_CFA_restore_state` with nothing remembered.
    case stateStackUnderflow(section: CFISectionKind, offset: Int)
    /// More nested `DW_CFA_remember_state` than ``CFIContext/maxStateDepth``.
    case stateStackOverflow(section: CFISectionKind, offset: Int, limit: Int)
    /// Rules for more registers than ``RegisterRules/capacity``.
    case tooManyRegisterRules(section: CFISectionKind, offset: Int, limit: Int)
    /// A register number above 65535.
    case badRegister(section: CFISectionKind, offset: Int, register: UInt64)
    /// `DW_CFA_def_cfa_register`/`def_cfa_offset` when the CFA rule is not
    /// register+offset (DWARF 5 §6.4.2.2).
    case cfaNotRegisterBased(section: CFISectionKind, offset: Int)
    /// A factored offset that overflows 64 bits.
    case offsetOverflow(section: CFISectionKind, offset: Int)
    /// More instructions than ``CFIContext/maxInstructions`` in one program.
    case instructionLimit(section: CFISectionKind, offset: Int, limit: Int)
    /// The address asked about is not in the FDE's range.
    case addressNotCovered(section: CFISectionKind, offset: Int, address: StatedAddress)
    /// The CFA rule of the row is undefined (no `DW_CFA_def_cfa*` ran).
    case cfaUndefined(section: CFISectionKind, offset: Int)

    // MARK: DWARF expressions (DWARF 5 §2.5)
    /// A `DW_OP_*` opcode that is unknown or not meaningful in call-frame information.
    case unsupportedOperation(section: CFISectionKind, offset: Int, opcode: UInt8)
    /// An operation needed more values than the stack held.
    case stackUnderflow(section: CFISectionKind, offset: Int, opcode: UInt8)
    /// More than ``DWARFExpression/stackCapacity`` values.
    case stackOverflow(section: CFISectionKind, offset: Int)
    /// `DW_OP_div` or `DW_OP_mod` by zero.
    case divisionByZero(section: CFISectionKind, offset: Int)
    /// `DW_OP_skip`/`DW_OP_bra` to outside the expression.
    case branchOutOfBounds(section: CFISectionKind, offset: Int, target: Int)
    /// More than the allowed number of operations were executed (a loop).
    case stepLimit(section: CFISectionKind, offset: Int, limit: Int)
    /// `DW_OP_deref_size` with a size of 0 or more than the address size.
    case badDerefSize(section: CFISectionKind, offset: Int, size: UInt8)
    /// The register-read callback had no value for `register`.
    case registerUnavailable(section: CFISectionKind, offset: Int, register: DWARFRegister)
    /// The memory-read callback could not read `size` bytes at `address`.
    case memoryUnreadable(section: CFISectionKind, offset: Int, address: ProcessAddress, size: Int)
    /// The expression finished with an empty stack.
    case emptyResult(section: CFISectionKind, offset: Int)

    /// The section the problem is in.
    public var section: CFISectionKind { location.section }
    /// The byte offset in ``section`` where it was found.
    public var offset: Int { location.offset }

    private var location: (section: CFISectionKind, offset: Int) {
        switch self {
        case .truncated(let s, let o, _, _), .leb128Overflow(let s, let o), .offsetOutOfBounds(let s, let o, _),
             .lengthOutOfBounds(let s, let o, _, _), .reservedLength(let s, let o, _),
             .badCIEPointer(let s, let o, _), .wrongEntryKind(let s, let o, _), .terminator(let s, let o),
             .unsupportedVersion(let s, let o, _), .unknownAugmentation(let s, let o, _),
             .badAddressSize(let s, let o, _), .badPointerEncoding(let s, let o, _),
             .missingPointerBase(let s, let o, _), .addressOverflow(let s, let o), .tableTooLarge(let s, let o, _),
             .unknownInstruction(let s, let o, _), .invalidInCIE(let s, let o, _),
             .locationBackwards(let s, let o, _, _), .stateStackUnderflow(let s, let o),
             .stateStackOverflow(let s, let o, _), .tooManyRegisterRules(let s, let o, _),
             .badRegister(let s, let o, _), .cfaNotRegisterBased(let s, let o), .offsetOverflow(let s, let o),
             .instructionLimit(let s, let o, _), .addressNotCovered(let s, let o, _), .cfaUndefined(let s, let o),
             .unsupportedOperation(let s, let o, _), .stackUnderflow(let s, let o, _), .stackOverflow(let s, let o),
             .divisionByZero(let s, let o), .branchOutOfBounds(let s, let o, _), .stepLimit(let s, let o, _),
             .badDerefSize(let s, let o, _), .registerUnavailable(let s, let o, _),
             .memoryUnreadable(let s, let o, _, _), .emptyResult(let s, let o):
            return (s, o)
        case .sectionTooLarge(let s, _):
            return (s, 0)
        }
    }

    public var description: String {
        let at = "\(section)+\(cfiHex(offset))"
        switch self {
        case .truncated(_, _, let needed, let limit):
            return "\(at): \(needed) more bytes needed but the entry ends at \(cfiHex(limit)); the section is truncated or corrupt"
        case .leb128Overflow:
            return "\(at): LEB128 number does not fit in 64 bits; the section is corrupt"
        case .sectionTooLarge(_, let size):
            return "\(section): \(size) bytes is larger than the 4 GiB this reader handles"
        case .offsetOutOfBounds(_, _, let size):
            return "\(at): offset is outside the \(size)-byte section"
        case .lengthOutOfBounds(_, _, let length, let size):
            return "\(at): entry length \(cfiHex(length)) runs past the end of the \(size)-byte section; the section is truncated or corrupt"
        case .reservedLength(_, _, let v):
            return "\(at): initial length \(cfiHex(UInt64(v))) is reserved (DWARF 5 §7.4); the section is corrupt"
        case .badCIEPointer(_, _, let p):
            return "\(at): FDE's CIE pointer \(cfiHex(p)) does not lead to a CIE in the section; the section is corrupt"
        case .wrongEntryKind(_, _, let expectedCIE):
            return expectedCIE ? "\(at): expected a CIE, found an FDE" : "\(at): expected an FDE, found a CIE"
        case .terminator:
            return "\(at): expected an entry, found the zero terminator"
        case .unsupportedVersion(_, _, let v):
            return "\(at): unsupported version \(v)"
        case .unknownAugmentation(_, _, let c):
            return "\(at): unknown CIE augmentation '\(printable(c))'; the CIE and its FDEs cannot be read"
        case .badAddressSize(_, _, let size):
            return "\(at): unsupported address or segment selector size \(size)"
        case .badPointerEncoding(_, _, let e):
            return "\(at): invalid or unusable pointer encoding \(cfiHex(UInt64(e))) (DW_EH_PE_*)"
        case .missingPointerBase(_, _, let e):
            return "\(at): pointer encoding \(cfiHex(UInt64(e))) is relative to a base address that was not given"
        case .addressOverflow:
            return "\(at): address computation overflows 64 bits; the entry is corrupt"
        case .tableTooLarge(_, _, let count):
            return "\(at): binary-search table of \(count) entries does not fit in the section; the section is corrupt"
        case .unknownInstruction(_, _, let op):
            return "\(at): unknown or unsupported call frame instruction \(cfiHex(UInt64(op)))"
        case .invalidInCIE(_, _, let op):
            return "\(at): call frame instruction \(cfiHex(UInt64(op))) is not allowed in a CIE"
        case .locationBackwards(_, _, let from, let to):
            return "\(at): DW_CFA_set_loc moves the location backwards from \(from) to \(to)"
        case .stateStackUnderflow:
            return "\(at): DW_CFA_restore_state without a matching DW_CFA_remember_state"
        case .stateStackOverflow(_, _, let limit):
            return "\(at): more than \(limit) nested DW_CFA_remember_state"
        case .tooManyRegisterRules(_, _, let limit):
            return "\(at): rules for more than \(limit) registers in one row"
        case .badRegister(_, _, let r):
            return "\(at): register number \(r) is out of range"
        case .cfaNotRegisterBased:
            return "\(at): DW_CFA_def_cfa_register/def_cfa_offset used while the CFA is not register+offset"
        case .offsetOverflow:
            return "\(at): factored offset overflows 64 bits"
        case .instructionLimit(_, _, let limit):
            return "\(at): more than \(limit) call frame instructions in one program"
        case .addressNotCovered(_, _, let a):
            return "\(at): the FDE does not cover \(a)"
        case .cfaUndefined:
            return "\(at): the CFA rule is undefined (no DW_CFA_def_cfa* in the CIE or FDE)"
        case .unsupportedOperation(_, _, let op):
            return "\(at): unknown or unsupported DWARF expression operation \(cfiHex(UInt64(op)))"
        case .stackUnderflow(_, _, let op):
            return "\(at): DWARF expression operation \(cfiHex(UInt64(op))) needs more values than the stack holds"
        case .stackOverflow:
            return "\(at): DWARF expression stack overflow (more than \(DWARFExpression.stackCapacity) values)"
        case .divisionByZero:
            return "\(at): DWARF expression divides by zero"
        case .branchOutOfBounds(_, _, let target):
            return "\(at): DWARF expression branches to \(target), outside the expression"
        case .stepLimit(_, _, let limit):
            return "\(at): DWARF expression ran more than \(limit) operations (a loop?)"
        case .badDerefSize(_, _, let size):
            return "\(at): DW_OP_deref_size of \(size) bytes"
        case .registerUnavailable(_, _, let r):
            return "\(at): DWARF expression reads register \(r), whose value is not known"
        case .memoryUnreadable(_, _, let a, let size):
            return "\(at): DWARF expression reads \(size) bytes at \(a), which are not available"
        case .emptyResult:
            return "\(at): DWARF expression left no value on the stack"
        }
    }
}

@inline(__always) func cfiHex(_ v: UInt64) -> String { "0x" + String(v, radix: 16) }
@inline(__always) func cfiHex(_ v: Int) -> String { v < 0 ? "-0x" + String(-v, radix: 16) : "0x" + String(v, radix: 16) }

private func printable(_ c: UInt8) -> String {
    (0x20..<0x7f).contains(c) ? String(UnicodeScalar(c)) : "\\x" + String(c, radix: 16)
}
