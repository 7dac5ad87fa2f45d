import SprofBase

/// A DWARF register number: a column of the call frame table (DWARF 5
/// §6.4.1). The mapping to machine registers is the architecture's psABI;
/// ``X86_64`` names the System V AMD64 one. Nothing else in the CFI reader
/// depends on the architecture.
public struct DWARFRegister: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt16) { self.rawValue = value }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "r\(rawValue)" }

    /// DWARF register numbers of the System V AMD64 psABI (§3.6.2, figure
    /// 3.36 "DWARF Register Number Mapping"). Note the order: 1 is rdx and 2
    /// is rcx, not the hardware encoding.
    public enum X86_64 {
        public static let rax = DWARFRegister(0)
        public static let rdx = DWARFRegister(1)
        public static let rcx = DWARFRegister(2)
        public static let rbx = DWARFRegister(3)
        public static let rsi = DWARFRegister(4)
        public static let rdi = DWARFRegister(5)
        public static let rbp = DWARFRegister(6)
        public static let rsp = DWARFRegister(7)
        public static let r8 = DWARFRegister(8)
        public static let r9 = DWARFRegister(9)
        public static let r10 = DWARFRegister(10)
        public static let r11 = DWARFRegister(11)
        public static let r12 = DWARFRegister(12)
        public static let r13 = DWARFRegister(13)
        public static let r14 = DWARFRegister(14)
        public static let r15 = DWARFRegister(15)
        /// "Return Address RA", column 16: the CIE's return address register.
        public static let returnAddress = DWARFRegister(16)

        /// The names `readelf` prints for columns 0–16 (16 is "rip").
        public static let names = ["rax", "rdx", "rcx", "rbx", "rsi", "rdi", "rbp", "rsp",
                                   "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15", "rip"]

        /// The name of `register`, or nil above 16.
        public static func name(of register: DWARFRegister) -> String? {
            Int(register.rawValue) < names.count ? names[Int(register.rawValue)] : nil
        }
    }
}

/// A DWARF expression inside a CFI section: the byte range of a
/// `DW_CFA_def_cfa_expression`, `DW_CFA_expression` or
/// `DW_CFA_val_expression` operand. 8 bytes, so rules stay small; get the
/// bytes with ``CallFrameSection/expression(_:)``.
public struct CFIExpression: Hashable, Sendable, CustomStringConvertible {
    /// Offset of the first expression byte in the section.
    public var offset: UInt32
    /// Number of bytes.
    public var length: UInt32
    @inlinable public init(offset: UInt32, length: UInt32) { self.offset = offset; self.length = length }
    public var range: Range<Int> { Int(offset)..<Int(offset) + Int(length) }
    public var description: String { "expr@0x" + String(offset, radix: 16) + "+\(length)" }
}

/// How to find the Canonical Frame Address (DWARF 5 §6.4.1: "Typically,
/// the CFA is defined to be the value of the stack pointer at the call site
/// in the previous frame").
public enum CFARule: Hashable, Sendable, CustomStringConvertible {
    /// No `DW_CFA_def_cfa*` has run: the row cannot be unwound.
    case undefined
    /// CFA = value of `register` + `offset` (`DW_CFA_def_cfa` and friends).
    case registerOffset(DWARFRegister, Int64)
    /// CFA = the value the expression computes (`DW_CFA_def_cfa_expression`;
    /// DWARF 5 §6.4.2.2: "The value of the CFA is the result of evaluating
    /// the expression", which starts with an empty stack).
    case expression(CFIExpression)

    public var description: String {
        switch self {
        case .undefined: return "u"
        case .registerOffset(let r, let o): return "\(r)\(o < 0 ? "" : "+")\(o)"
        case .expression: return "exp"
        }
    }
}

/// The rule that recovers a register's value in the caller (DWARF 5
/// §6.4.1, the register rules). 9 bytes. Where the CFI gives no rule at all
/// the row has none (``RegisterRules/rule(for:)`` returns nil): the ABI
/// default applies (for callee-saved registers that is "same value").
public enum RegisterRule: Hashable, Sendable, CustomStringConvertible {
    /// "undefined: A register that has this rule has no recoverable value in
    /// the previous frame." On the return address column: the outermost frame.
    case undefined
    /// "same value: This register has not been modified from the previous frame."
    case sameValue
    /// "offset(N): The previous value of this register is saved at the
    /// address CFA+N."
    case offset(Int64)
    /// "val_offset(N): The previous value of this register is the value CFA+N."
    case valOffset(Int64)
    /// "register(R): The previous value of this register is stored in
    /// another register numbered R."
    case register(DWARFRegister)
    /// "expression(E): The previous value of this register is located at
    /// the address produced by executing the DWARF expression E" (the CFA is
    /// pushed first, §6.4.2.3).
    case expression(CFIExpression)
    /// "val_expression(E): The previous value of this register is the value
    /// produced by executing the DWARF expression E" (the CFA pushed first).
    case valExpression(CFIExpression)

    /// `readelf --debug-dump=frames-interp` notation (offsets in bytes).
    public var description: String {
        switch self {
        case .undefined: return "u"
        case .sameValue: return "s"
        case .offset(let n): return "c\(n < 0 ? "" : "+")\(n)"
        case .valOffset(let n): return "v\(n < 0 ? "" : "+")\(n)"
        case .register(let r): return "\(r)"
        case .expression: return "exp"
        case .valExpression: return "vexp"
        }
    }
}

/// The rules of one row for the registers the CFI mentions: a fixed-capacity
/// map stored inline (no heap), as gimli's `RegisterRuleMap`. Registers not
/// in the map have no rule ("unspecified").
///
/// Capacity: x86_64 glibc's `__restore_rt` has a rule for each of the 17
/// columns 0–16, the most any x86_64 code has; an AArch64 function saving
/// x19–x30 and d8–d15 needs 20. 24 leaves room and keeps a row at about
/// 420 bytes. A program that needs more gets
/// ``CFIError/tooManyRegisterRules(section:offset:limit:)``.
public struct RegisterRules: Sendable, RandomAccessCollection, Equatable, CustomStringConvertible {
    public static let capacity = 24

    /// One (register, rule) pair; the rule first so the pair is 16 bytes.
    public struct Entry: Hashable, Sendable {
        public var rule: RegisterRule
        public var register: DWARFRegister
    }

    @usableFromInline var storage: InlineArray<24, Entry>
    @usableFromInline var used: UInt8

    public init() {
        storage = InlineArray(repeating: Entry(rule: .undefined, register: DWARFRegister(0)))
        used = 0
    }

    public var startIndex: Int { 0 }
    public var endIndex: Int { Int(used) }
    public subscript(position: Int) -> Entry { storage[position] }

    /// The rule for `register`, or nil when the CFI gives none.
    @inlinable public func rule(for register: DWARFRegister) -> RegisterRule? {
        for i in 0..<Int(used) where storage[i].register == register { return storage[i].rule }
        return nil
    }

    /// Sets the rule for `register`; false when the map is full.
    @discardableResult
    public mutating func set(_ register: DWARFRegister, _ rule: RegisterRule) -> Bool {
        for i in 0..<Int(used) where storage[i].register == register {
            storage[i].rule = rule
            return true
        }
        guard Int(used) < Self.capacity else { return false }
        storage[Int(used)] = Entry(rule: rule, register: register)
        used += 1
        return true
    }

    /// Removes any rule for `register` (it becomes unspecified).
    public mutating func remove(_ register: DWARFRegister) {
        for i in 0..<Int(used) where storage[i].register == register {
            used -= 1
            storage[i] = storage[Int(used)]
            return
        }
    }

    public mutating func removeAll() { used = 0 }

    /// Equal when they hold the same rules, in any order.
    public static func == (a: RegisterRules, b: RegisterRules) -> Bool {
        guard a.used == b.used else { return false }
        for e in a where b.rule(for: e.register) != e.rule { return false }
        return true
    }

    public var description: String {
        sorted { $0.register < $1.register }.map { "\($0.register)=\($0.rule)" }.joined(separator: " ")
    }
}

/// One row of the call frame table (DWARF 5 §6.4.1, figure 6.9): the rules
/// that hold for every instruction address in `start..<end`. A value type
/// with no references (about 440 bytes), so arrays of rows are flat.
public struct CFIRow: Sendable, Equatable, CustomStringConvertible {
    /// The first address the row covers (the FDE's `initial_location`, or
    /// the location a `DW_CFA_advance_loc*`/`set_loc` moved to).
    public var start: StatedAddress
    /// One past the last address covered: the next row's start, or the end
    /// of the FDE's range.
    public var end: StatedAddress
    public var cfa: CFARule
    public var registers: RegisterRules
    /// The last `DW_CFA_GNU_args_size` operand (bytes of outgoing arguments
    /// pushed at this point; used by C++ landing pads), 0 when none.
    public var argumentsSize: UInt64

    public init(start: StatedAddress, end: StatedAddress, cfa: CFARule = .undefined,
                registers: RegisterRules = RegisterRules(), argumentsSize: UInt64 = 0) {
        self.start = start; self.end = end; self.cfa = cfa; self.registers = registers
        self.argumentsSize = argumentsSize
    }

    /// The rule for `register`, or nil when the CFI gives none.
    @inlinable public func rule(for register: DWARFRegister) -> RegisterRule? { registers.rule(for: register) }

    public func contains(_ address: StatedAddress) -> Bool { start <= address && address < end }

    public var description: String {
        "[\(start.rawValue.cfiHexString)..\(end.rawValue.cfiHexString)) cfa=\(cfa) \(registers)"
    }
}

extension UInt64 {
    var cfiHexString: String { "0x" + String(self, radix: 16) }
}
