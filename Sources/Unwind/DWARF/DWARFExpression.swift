import SprofBase

/// `DW_OP_*` opcodes (DWARF 5 §7.7.1, table 7.9 "DWARF operation encodings").
public enum DW_OP {
    public static let addr: UInt8 = 0x03
    public static let deref: UInt8 = 0x06
    public static let const1u: UInt8 = 0x08
    public static let const1s: UInt8 = 0x09
    public static let const2u: UInt8 = 0x0a
    public static let const2s: UInt8 = 0x0b
    public static let const4u: UInt8 = 0x0c
    public static let const4s: UInt8 = 0x0d
    public static let const8u: UInt8 = 0x0e
    public static let const8s: UInt8 = 0x0f
    public static let constu: UInt8 = 0x10
    public static let consts: UInt8 = 0x11
    public static let dup: UInt8 = 0x12
    public static let drop: UInt8 = 0x13
    public static let over: UInt8 = 0x14
    public static let pick: UInt8 = 0x15
    public static let swap: UInt8 = 0x16
    public static let rot: UInt8 = 0x17
    public static let xderef: UInt8 = 0x18
    public static let abs: UInt8 = 0x19
    public static let and: UInt8 = 0x1a
    public static let div: UInt8 = 0x1b
    public static let minus: UInt8 = 0x1c
    public static let mod: UInt8 = 0x1d
    public static let mul: UInt8 = 0x1e
    public static let neg: UInt8 = 0x1f
    public static let not: UInt8 = 0x20
    public static let or: UInt8 = 0x21
    public static let plus: UInt8 = 0x22
    public static let plus_uconst: UInt8 = 0x23
    public static let shl: UInt8 = 0x24
    public static let shr: UInt8 = 0x25
    public static let shra: UInt8 = 0x26
    public static let xor: UInt8 = 0x27
    public static let bra: UInt8 = 0x28
    public static let eq: UInt8 = 0x29
    public static let ge: UInt8 = 0x2a
    public static let gt: UInt8 = 0x2b
    public static let le: UInt8 = 0x2c
    public static let lt: UInt8 = 0x2d
    public static let ne: UInt8 = 0x2e
    public static let skip: UInt8 = 0x2f
    /// `DW_OP_lit0` … `DW_OP_lit31` are 0x30 … 0x4f.
    public static let lit0: UInt8 = 0x30
    /// `DW_OP_reg0` … `DW_OP_reg31` are 0x50 … 0x6f.
    public static let reg0: UInt8 = 0x50
    /// `DW_OP_breg0` … `DW_OP_breg31` are 0x70 … 0x8f.
    public static let breg0: UInt8 = 0x70
    public static let regx: UInt8 = 0x90
    public static let fbreg: UInt8 = 0x91
    public static let bregx: UInt8 = 0x92
    public static let piece: UInt8 = 0x93
    public static let deref_size: UInt8 = 0x94
    public static let nop: UInt8 = 0x96
    public static let call_frame_cfa: UInt8 = 0x9c
    public static let stack_value: UInt8 = 0x9f
}

/// A DWARF expression (DWARF 5 §2.5, "DWARF Expressions") as used in call
/// frame information, with a bounded evaluator.
///
/// "A DWARF expression is stored in a block of contiguous bytes. The bytes
/// form a sequence of operations. Each operation is a 1-byte code that
/// identifies that operation, followed by zero or more bytes of additional
/// data." (§2.5). Values are the generic type: address-sized (64-bit here),
/// wrapping on overflow; comparisons and `DW_OP_div` are signed, as the
/// generic type's operations are in GCC's unwinder and gimli.
///
/// Supported: literals (`lit*`, `const*`, `addr`), register values
/// (`reg*`, `breg*`, `regx`, `bregx`), stack operations (`dup`, `drop`,
/// `over`, `pick`, `swap`, `rot`), arithmetic and logic (`abs`, `and`,
/// `div`, `minus`, `mod`, `mul`, `neg`, `not`, `or`, `plus`, `plus_uconst`,
/// `shl`, `shr`, `shra`, `xor`), comparisons, control flow (`skip`, `bra`),
/// memory (`deref`, `deref_size`), `nop`, `call_frame_cfa` (when a CFA is
/// given) and `stack_value` (ends the expression). Everything else
/// (`piece`, `fbreg`, calls, TLS, typed operations, GNU extensions) is an
/// error: none of it is meaningful in a CFA or register rule (§6.4.2).
///
/// Bounded: at most ``stackCapacity`` values and `maxSteps` operations, so a
/// looping or hostile expression ends with an error. Nothing is allocated.
public struct DWARFExpression: @unchecked Sendable {
    // @unchecked: read-only bytes, owned by the section's file.

    /// The most values the stack holds. The expressions compilers emit for
    /// CFI use 3 or 4 (the x86_64 PLT one); 64 is plenty.
    public static let stackCapacity = 64
    /// The default step bound: real CFI expressions run straight through
    /// in under 20 operations.
    public static let defaultMaxSteps = 1000

    public let bytes: UnsafeRawBufferPointer
    /// For error messages: where the expression is.
    public let section: CFISectionKind
    public let sectionOffset: Int
    /// Bytes in an address (`DW_OP_addr`, `DW_OP_deref`).
    public let addressSize: Int

    public init(bytes: UnsafeRawBufferPointer, section: CFISectionKind = .expression, sectionOffset: Int = 0,
                addressSize: Int = 8) {
        self.bytes = bytes
        self.section = section
        self.sectionOffset = sectionOffset
        self.addressSize = addressSize
    }

    /// Evaluates the expression and returns the value on top of the stack.
    ///
    /// - Parameters:
    ///   - initialValue: pushed before the first operation. For
    ///     `DW_CFA_expression`/`DW_CFA_val_expression` rules this is the CFA
    ///     (DWARF 5 §6.4.2.3: "the value of the CFA is pushed on the DWARF
    ///     evaluation stack prior to execution"); nil for
    ///     `DW_CFA_def_cfa_expression`.
    ///   - cfa: the value of `DW_OP_call_frame_cfa`; nil where it is not
    ///     meaningful (computing the CFA itself), which makes it an error.
    ///   - loadBias: added to `DW_OP_addr` operands (stated addresses) to
    ///     make them process addresses.
    ///   - maxSteps: the most operations executed (branches can loop).
    ///   - readRegister: the value of a register in the frame being unwound,
    ///     or nil when unknown.
    ///   - readMemory: `size` (1…8) bytes at an address, little-endian,
    ///     zero-extended; nil when they cannot be read.
    public func evaluate(initialValue: UInt64? = nil, cfa: UInt64? = nil, loadBias: UInt64 = 0,
                         maxSteps: Int = DWARFExpression.defaultMaxSteps,
                         readRegister: (DWARFRegister) -> UInt64?,
                         readMemory: (ProcessAddress, Int) -> UInt64?) throws(CFIError) -> UInt64 {
        var stack = InlineArray<64, UInt64>(repeating: 0)
        var depth = 0
        let sk = section
        let base = sectionOffset
        var r = DWARFReader(bytes: bytes, section: sk)
        var opOffset = 0
        var opcode: UInt8 = 0

        // Errors name the section offset of the failing operation.
        func push(_ v: UInt64) throws(CFIError) {
            guard depth < Self.stackCapacity else { throw .stackOverflow(section: sk, offset: base + opOffset) }
            stack[depth] = v
            depth += 1
        }
        func pop() throws(CFIError) -> UInt64 {
            guard depth > 0 else { throw .stackUnderflow(section: sk, offset: base + opOffset, opcode: opcode) }
            depth -= 1
            return stack[depth]
        }
        func need(_ n: Int) throws(CFIError) {
            guard depth >= n else { throw .stackUnderflow(section: sk, offset: base + opOffset, opcode: opcode) }
        }
        func register(_ n: UInt64) throws(CFIError) -> UInt64 {
            guard n <= UInt64(UInt16.max) else { throw .badRegister(section: sk, offset: base + opOffset, register: n) }
            let reg = DWARFRegister(UInt16(n))
            guard let v = readRegister(reg) else {
                throw .registerUnavailable(section: sk, offset: base + opOffset, register: reg)
            }
            return v
        }
        func load(_ address: UInt64, _ size: Int) throws(CFIError) -> UInt64 {
            guard let v = readMemory(ProcessAddress(address), size) else {
                throw .memoryUnreadable(section: sk, offset: base + opOffset, address: ProcessAddress(address), size: size)
            }
            // Keep only `size` bytes, whatever the callback returned.
            return size >= 8 ? v : v & ((1 << UInt64(8 * size)) - 1)
        }
        func binary(_ f: (UInt64, UInt64) -> UInt64) throws(CFIError) {
            // "pops the top two stack entries, [operates on] the former second
            // entry [and] the former top entry, and pushes the result".
            let top = try pop()
            let second = try pop()
            try push(f(second, top))
        }
        func compare(_ f: (Int64, Int64) -> Bool) throws(CFIError) {
            try binary { f(Int64(bitPattern: $0), Int64(bitPattern: $1)) ? 1 : 0 }
        }
        func jump(_ delta: Int16) throws(CFIError) {
            // "relative to the beginning of the next operation".
            let target = r.offset + Int(delta)
            guard target >= 0, target <= bytes.count else {
                throw .branchOutOfBounds(section: sk, offset: base + opOffset, target: base + target)
            }
            r.offset = target
        }

        if let v = initialValue { try push(v) }
        var steps = 0
        loop: while !r.isAtEnd {
            steps += 1
            guard steps <= maxSteps else { throw .stepLimit(section: sk, offset: base + r.offset, limit: maxSteps) }
            opOffset = r.offset
            opcode = bytes[r.offset]  // in bounds: not at end
            r.offset += 1
            do throws(CFIError) {
                switch opcode {
                case DW_OP.lit0...(DW_OP.lit0 + 31):
                    try push(UInt64(opcode - DW_OP.lit0))
                case DW_OP.addr:
                    try push(try r.unsigned(size: addressSize) &+ loadBias)
                case DW_OP.const1u: try push(UInt64(try r.u8()))
                case DW_OP.const1s: try push(UInt64(bitPattern: Int64(Int8(bitPattern: try r.u8()))))
                case DW_OP.const2u: try push(UInt64(try r.u16()))
                case DW_OP.const2s: try push(UInt64(bitPattern: Int64(Int16(bitPattern: try r.u16()))))
                case DW_OP.const4u: try push(UInt64(try r.u32()))
                case DW_OP.const4s: try push(UInt64(bitPattern: Int64(Int32(bitPattern: try r.u32()))))
                case DW_OP.const8u, DW_OP.const8s: try push(try r.u64())
                case DW_OP.constu: try push(try r.uleb128())
                case DW_OP.consts: try push(UInt64(bitPattern: try r.sleb128()))
                case DW_OP.reg0...(DW_OP.reg0 + 31):
                    // A register location; in a rule, its value stands for it.
                    try push(try register(UInt64(opcode - DW_OP.reg0)))
                case DW_OP.breg0...(DW_OP.breg0 + 31):
                    let offset = try r.sleb128()
                    try push(try register(UInt64(opcode - DW_OP.breg0)) &+ UInt64(bitPattern: offset))
                case DW_OP.regx:
                    try push(try register(try r.uleb128()))
                case DW_OP.bregx:
                    let n = try r.uleb128()
                    let offset = try r.sleb128()
                    try push(try register(n) &+ UInt64(bitPattern: offset))
                case DW_OP.dup:
                    try need(1)
                    try push(stack[depth - 1])
                case DW_OP.drop:
                    _ = try pop()
                case DW_OP.over:
                    try need(2)
                    try push(stack[depth - 2])
                case DW_OP.pick:
                    // "The single operand ... provides a 1-byte index. A copy
                    // of the stack entry with the specified index (0 through
                    // 255, inclusive) is pushed onto the stack."
                    let i = Int(try r.u8())
                    try need(i + 1)
                    try push(stack[depth - 1 - i])
                case DW_OP.swap:
                    try need(2)
                    stack.swapAt(depth - 1, depth - 2)
                case DW_OP.rot:
                    // "The entry at the top of the stack becomes the third
                    // stack entry, the second entry becomes the top of the
                    // stack, and the third entry becomes the second entry."
                    try need(3)
                    let top = stack[depth - 1], second = stack[depth - 2], third = stack[depth - 3]
                    stack[depth - 1] = second
                    stack[depth - 2] = third
                    stack[depth - 3] = top
                case DW_OP.deref:
                    try push(try load(try pop(), addressSize))
                case DW_OP.deref_size:
                    // "the size in bytes of the data retrieved ... may not be
                    // larger than the size of an address on the target machine".
                    let size = try r.u8()
                    guard size >= 1, Int(size) <= addressSize else {
                        throw CFIError.badDerefSize(section: sk, offset: base + opOffset, size: size)
                    }
                    try push(try load(try pop(), Int(size)))
                case DW_OP.abs:
                    let v = Int64(bitPattern: try pop())
                    try push(UInt64(bitPattern: v < 0 ? 0 &- v : v))
                case DW_OP.neg:
                    try push(0 &- (try pop()))
                case DW_OP.not:
                    try push(~(try pop()))
                case DW_OP.and: try binary { $0 & $1 }
                case DW_OP.or: try binary { $0 | $1 }
                case DW_OP.xor: try binary { $0 ^ $1 }
                case DW_OP.plus: try binary { $0 &+ $1 }
                case DW_OP.minus: try binary { $0 &- $1 }
                case DW_OP.mul: try binary { $0 &* $1 }
                case DW_OP.div:
                    try need(2)
                    guard stack[depth - 1] != 0 else { throw CFIError.divisionByZero(section: sk, offset: base + opOffset) }
                    // Signed; Int64.min / -1 wraps.
                    try binary { UInt64(bitPattern: Int64(bitPattern: $0).dividedReportingOverflow(by: Int64(bitPattern: $1)).partialValue) }
                case DW_OP.mod:
                    try need(2)
                    guard stack[depth - 1] != 0 else { throw CFIError.divisionByZero(section: sk, offset: base + opOffset) }
                    try binary { $0 % $1 }
                case DW_OP.plus_uconst:
                    let n = try r.uleb128()
                    try push(try pop() &+ n)
                case DW_OP.shl: try binary { $1 >= 64 ? 0 : $0 << $1 }
                case DW_OP.shr: try binary { $1 >= 64 ? 0 : $0 >> $1 }
                case DW_OP.shra:
                    try binary { UInt64(bitPattern: Int64(bitPattern: $0) >> Int64(min($1, 63))) }
                case DW_OP.eq: try compare { $0 == $1 }
                case DW_OP.ge: try compare { $0 >= $1 }
                case DW_OP.gt: try compare { $0 > $1 }
                case DW_OP.le: try compare { $0 <= $1 }
                case DW_OP.lt: try compare { $0 < $1 }
                case DW_OP.ne: try compare { $0 != $1 }
                case DW_OP.skip:
                    try jump(Int16(bitPattern: try r.u16()))
                case DW_OP.bra:
                    let delta = Int16(bitPattern: try r.u16())
                    if try pop() != 0 { try jump(delta) }
                case DW_OP.nop:
                    break
                case DW_OP.call_frame_cfa:
                    guard let c = cfa else { throw CFIError.unsupportedOperation(section: sk, offset: base + opOffset, opcode: opcode) }
                    try push(c)
                case DW_OP.stack_value:
                    // "the value on top of the stack is the value being
                    // described": the result either way.
                    break loop
                default:
                    throw CFIError.unsupportedOperation(section: sk, offset: base + opOffset, opcode: opcode)
                }
            } catch {
                throw relocate(error)
            }
        }
        guard depth > 0 else { throw .emptyResult(section: sk, offset: base + bytes.count) }
        return stack[depth - 1]
    }

    /// Operand-read errors come from a reader over the expression's bytes
    /// alone (only it throws these three); shift their offsets to section
    /// offsets. Errors the evaluator throws itself already carry them.
    private func relocate(_ e: CFIError) -> CFIError {
        switch e {
        case .truncated(let s, let o, let n, let l):
            return .truncated(section: s, offset: sectionOffset + o, needed: n, limit: sectionOffset + l)
        case .leb128Overflow(let s, let o):
            return .leb128Overflow(section: s, offset: sectionOffset + o)
        case .badAddressSize(let s, let o, let size):
            return .badAddressSize(section: s, offset: sectionOffset + o, size: size)
        default:
            return e
        }
    }
}
