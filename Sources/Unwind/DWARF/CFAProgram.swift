import SprofBase

/// `DW_CFA_*` opcodes (DWARF 5 §7.24, table 7.29 "Call frame instruction
/// encodings"; GNU extensions from GCC's include/dwarf2.def).
public enum DW_CFA {
    // High two bits, with an operand in the low six.
    public static let advance_loc: UInt8 = 0x40
    public static let offset: UInt8 = 0x80
    public static let restore: UInt8 = 0xc0
    // Low six bits, high two zero.
    public static let nop: UInt8 = 0x00
    public static let set_loc: UInt8 = 0x01
    public static let advance_loc1: UInt8 = 0x02
    public static let advance_loc2: UInt8 = 0x03
    public static let advance_loc4: UInt8 = 0x04
    public static let offset_extended: UInt8 = 0x05
    public static let restore_extended: UInt8 = 0x06
    public static let undefined: UInt8 = 0x07
    public static let same_value: UInt8 = 0x08
    public static let register: UInt8 = 0x09
    public static let remember_state: UInt8 = 0x0a
    public static let restore_state: UInt8 = 0x0b
    public static let def_cfa: UInt8 = 0x0c
    public static let def_cfa_register: UInt8 = 0x0d
    public static let def_cfa_offset: UInt8 = 0x0e
    public static let def_cfa_expression: UInt8 = 0x0f
    public static let expression: UInt8 = 0x10
    public static let offset_extended_sf: UInt8 = 0x11
    public static let def_cfa_sf: UInt8 = 0x12
    public static let def_cfa_offset_sf: UInt8 = 0x13
    public static let val_offset: UInt8 = 0x14
    public static let val_offset_sf: UInt8 = 0x15
    public static let val_expression: UInt8 = 0x16
    /// SPARC register windows; on AArch64 the same value is
    /// `DW_CFA_AARCH64_negate_ra_state`. Neither is supported.
    public static let GNU_window_save: UInt8 = 0x2d
    public static let GNU_args_size: UInt8 = 0x2e
    public static let GNU_negative_offset_extended: UInt8 = 0x2f
}

/// Reusable scratch space for running CFA programs (gimli's
/// `UnwindContext`): the CIE's initial rules and the `DW_CFA_remember_state`
/// stack, stored inline (rows are value types on the stack), so evaluating
/// FDE after FDE with one context allocates nothing. (The CIE's initial instructions are
/// rerun for every FDE, as gimli does: three or four instructions, cheaper
/// than a cache that would have to know when a mapping is reused.)
///
/// Not thread-safe: one context per thread.
public final class CFIContext {
    /// The deepest `DW_CFA_remember_state` nesting allowed. Compilers emit
    /// one level per epilogue in the middle of a function, never nested in
    /// practice (gimli allows 4 by default); 16 bounds the context's size
    /// (16 × ~420 bytes).
    public static let maxStateDepth = 16

    /// The most instructions one CFA program may run. Programs cannot loop
    /// (each instruction consumes at least a byte and the location only moves
    /// forward) so this only caps the time spent on absurd FDEs. The largest
    /// FDE program in libc is 179 bytes; in swift-frontend (235 000 FDEs of
    /// C++) 11 047 bytes.
    public var maxInstructions: Int

    /// The rules a saved state holds: the CFA rule and the register rules
    /// (`DW_CFA_remember_state` saves "the set of rules for every register";
    /// GCC, LLVM and gimli include the CFA, and compilers rely on it).
    @usableFromInline struct State {
        var cfa: CFARule
        var registers: RegisterRules
    }

    // Unchecked exclusivity: the context is used by one thread and the
    // interpreter never holds two accesses to one property; the dynamic
    // checks cost a tenth of a row lookup.
    @exclusivity(unchecked) @usableFromInline var stack: InlineArray<16, State>
    @exclusivity(unchecked) @usableFromInline var depth = 0
    @exclusivity(unchecked) @usableFromInline var initial: State

    public init(maxInstructions: Int = 100_000) {
        self.maxInstructions = maxInstructions
        let empty = State(cfa: .undefined, registers: RegisterRules())
        stack = InlineArray(repeating: empty)
        initial = empty
    }
}

/// What a location change means for the interpreter loop.
private enum Step {
    /// Go on with the next instruction.
    case next
    /// The row just ended covers the address asked for.
    case found
    /// The location reached the end of the FDE's range.
    case finished
}

extension CallFrameSection {
    // MARK: - Rows

    /// All rows of `fde`'s table (DWARF 5 §6.4.1, figure 6.9), in address
    /// order, covering `fde.initialLocation ..< fde.endAddress` without gaps.
    /// Rows of zero length (two location changes at the same address) are
    /// left out.
    public func rows(of fde: FrameDescriptionEntry, context: CFIContext = CFIContext()) throws(CFIError) -> [CFIRow] {
        var out: [CFIRow] = []
        try forEachRow(of: fde, context: context) { out.append($0) }
        return out
    }

    /// Calls `body` with each row of `fde`, in address order, allocating nothing.
    public func forEachRow(of fde: FrameDescriptionEntry, context: CFIContext,
                           _ body: (CFIRow) -> Void) throws(CFIError) {
        var row = CFIRow(start: fde.initialLocation, end: fde.endAddress)
        _ = try run(fde, context: context, stopAt: nil, row: &row, body)
    }

    /// The row of `fde` that covers `address`: the program runs only as far
    /// as that row's end. Allocates nothing.
    public func row(for address: StatedAddress, in fde: FrameDescriptionEntry,
                    context: CFIContext = CFIContext()) throws(CFIError) -> CFIRow {
        guard fde.contains(address) else {
            throw .addressNotCovered(section: sectionKind, offset: fde.offset, address: address)
        }
        var row = CFIRow(start: fde.initialLocation, end: fde.endAddress)
        guard try run(fde, context: context, stopAt: address, row: &row, { _ in }) else {
            // Unreachable: rows cover the FDE's whole range.
            throw .addressNotCovered(section: sectionKind, offset: fde.offset, address: address)
        }
        return row
    }

    /// The rules the CIE's initial instructions set up (every FDE's first
    /// row starts from them; `DW_CFA_restore` returns to them).
    public func initialRules(of cie: CommonInformationEntry, context: CFIContext = CFIContext()) throws(CFIError)
        -> (cfa: CFARule, registers: RegisterRules) {
        try prepareInitial(cie, context)
        return (context.initial.cfa, context.initial.registers)
    }

    func prepareInitial(_ cie: CommonInformationEntry, _ ctx: CFIContext) throws(CFIError) {
        var row = CFIRow(start: StatedAddress(0), end: StatedAddress(0))
        ctx.depth = 0
        _ = try execute(cie.initialInstructions, cie: cie, fde: nil, row: &row, context: ctx, stopAt: nil, { _ in })
        // One copy into the context: FDE programs start from it and restore to it.
        ctx.initial = CFIContext.State(cfa: row.cfa, registers: row.registers)
    }

    /// Runs the CIE's initial instructions, then the FDE's, in `row`.
    /// True when it stopped at the row covering `stopAt` (left in `row`).
    func run(_ fde: FrameDescriptionEntry, context ctx: CFIContext, stopAt: StatedAddress?, row: inout CFIRow,
             _ body: (CFIRow) -> Void) throws(CFIError) -> Bool {
        try prepareInitial(fde.cie, ctx)
        row.cfa = ctx.initial.cfa
        row.registers = ctx.initial.registers
        ctx.depth = 0
        return try execute(fde.instructions, cie: fde.cie, fde: fde, row: &row, context: ctx, stopAt: stopAt, body)
    }

    /// The CFA program interpreter (DWARF 5 §6.4.2). `fde` nil: the CIE's
    /// initial instructions, where location changes and restores are errors.
    ///
    /// Each location change (§6.4.2.1: "create a new table row") ends the
    /// current row at the new location: it is passed to `body` (or, when it
    /// covers `stopAt`, left in `row` and true is returned) and the next row
    /// starts as a copy of it.
    private func execute(_ program: Range<Int>, cie: CommonInformationEntry, fde: FrameDescriptionEntry?,
                         row: inout CFIRow, context ctx: CFIContext, stopAt: StatedAddress?,
                         _ body: (CFIRow) -> Void) throws(CFIError) -> Bool {
        let sk = sectionKind
        var r = DWARFReader(bytes: bytes, section: sk, sectionAddress: address, offset: program.lowerBound,
                            limit: program.upperBound)
        let end = fde?.endAddress ?? StatedAddress(0)
        let daf = cie.dataAlignmentFactor
        let caf = cie.codeAlignmentFactor
        let addressSize = Int(cie.addressSize)
        var count = 0
        let maxInstructions = ctx.maxInstructions

        /// Ends the current row at `next` (clipped to the FDE's end).
        func advance(to next: StatedAddress, at o: Int) throws(CFIError) -> Step {
            guard next >= row.start else {
                throw .locationBackwards(section: sk, offset: o, from: row.start, to: next)
            }
            let rowEnd = min(next, end)
            if row.start < rowEnd {
                row.end = rowEnd
                if let s = stopAt, s < rowEnd { return .found }
                body(row)
            }
            row.start = next
            // Instructions past the end of the range describe no address.
            return next >= end ? .finished : .next
        }

        /// A factored offset (DWARF 5 §6.4.2: "offset * data_alignment_factor").
        func factored(_ n: Int64, at o: Int) throws(CFIError) -> Int64 {
            let (v, overflow) = n.multipliedReportingOverflow(by: daf)
            guard !overflow else { throw .offsetOverflow(section: sk, offset: o) }
            return v
        }
        func factored(_ n: UInt64, at o: Int) throws(CFIError) -> Int64 {
            guard n <= UInt64(Int64.max) else { throw .offsetOverflow(section: sk, offset: o) }
            return try factored(Int64(n), at: o)
        }
        func register(_ r: inout DWARFReader) throws(CFIError) -> DWARFRegister {
            let o = r.offset
            let n = try r.uleb128()
            guard n <= UInt64(UInt16.max) else { throw .badRegister(section: sk, offset: o, register: n) }
            return DWARFRegister(UInt16(n))
        }
        func set(_ reg: DWARFRegister, _ rule: RegisterRule, at o: Int) throws(CFIError) {
            guard row.registers.set(reg, rule) else {
                throw .tooManyRegisterRules(section: sk, offset: o, limit: RegisterRules.capacity)
            }
        }
        func restore(_ reg: DWARFRegister, at o: Int, opcode: UInt8) throws(CFIError) {
            // "change the rule for the indicated register to the rule
            // assigned it by the initial_instructions in the CIE".
            guard fde != nil else { throw .invalidInCIE(section: sk, offset: o, opcode: opcode) }
            if let rule = ctx.initial.registers.rule(for: reg) {
                try set(reg, rule, at: o)
            } else {
                row.registers.remove(reg)
            }
        }
        func expression(_ r: inout DWARFReader) throws(CFIError) -> CFIExpression {
            let length = try r.uleb128()
            let block = try r.block(length: length)
            return CFIExpression(offset: UInt32(block.lowerBound), length: UInt32(block.count))
        }
        func advanceLocation(by delta: UInt64, at o: Int, opcode: UInt8) throws(CFIError) -> Step {
            guard fde != nil else { throw .invalidInCIE(section: sk, offset: o, opcode: opcode) }
            // "a new location value that is the current location plus delta * code_alignment_factor".
            let (d, o1) = delta.multipliedReportingOverflow(by: caf)
            let (next, o2) = row.start.rawValue.addingReportingOverflow(d)
            guard !o1, !o2 else { throw .addressOverflow(section: sk, offset: o) }
            return try advance(to: StatedAddress(next), at: o)
        }

        while !r.isAtEnd {
            count += 1
            guard count <= maxInstructions else {
                throw .instructionLimit(section: sk, offset: r.offset, limit: maxInstructions)
            }
            let o = r.offset
            let opcode = try r.u8()
            let low = opcode & 0x3f
            switch opcode & 0xc0 {
            case DW_CFA.advance_loc:
                switch try advanceLocation(by: UInt64(low), at: o, opcode: opcode) {
                case .next: continue
                case .found: return true
                case .finished: return false
                }
            case DW_CFA.offset:
                // DW_CFA_offset: register in the low bits, ULEB128 factored offset.
                try set(DWARFRegister(UInt16(low)), .offset(try factored(try r.uleb128(), at: o)), at: o)
                continue
            case DW_CFA.restore:
                try restore(DWARFRegister(UInt16(low)), at: o, opcode: opcode)
                continue
            default:
                break
            }
            var step = Step.next
            switch opcode {
            case DW_CFA.nop:
                break
            case DW_CFA.set_loc:
                guard fde != nil else { throw .invalidInCIE(section: sk, offset: o, opcode: opcode) }
                // .eh_frame: encoded like the FDE's addresses (GCC
                // unwind-dw2.c); .debug_frame: an address_size address.
                let target: UInt64
                if kind == .ehFrame {
                    let e = cie.augmentation.fdeEncoding
                    guard case .direct(let a) = try r.encodedPointer(e, bases: bases, addressSize: addressSize) else {
                        throw .badPointerEncoding(section: sk, offset: o + 1, encoding: e.rawValue)
                    }
                    target = a.rawValue
                } else {
                    try r.skip(Int(cie.segmentSelectorSize))
                    target = try r.unsigned(size: addressSize)
                }
                step = try advance(to: StatedAddress(target), at: o)
            case DW_CFA.advance_loc1:
                step = try advanceLocation(by: UInt64(try r.u8()), at: o, opcode: opcode)
            case DW_CFA.advance_loc2:
                step = try advanceLocation(by: UInt64(try r.u16()), at: o, opcode: opcode)
            case DW_CFA.advance_loc4:
                step = try advanceLocation(by: UInt64(try r.u32()), at: o, opcode: opcode)
            case DW_CFA.offset_extended:
                let reg = try register(&r)
                try set(reg, .offset(try factored(try r.uleb128(), at: o)), at: o)
            case DW_CFA.restore_extended:
                try restore(try register(&r), at: o, opcode: opcode)
            case DW_CFA.undefined:
                try set(try register(&r), .undefined, at: o)
            case DW_CFA.same_value:
                try set(try register(&r), .sameValue, at: o)
            case DW_CFA.register:
                let reg = try register(&r)
                try set(reg, .register(try register(&r)), at: o)
            case DW_CFA.remember_state:
                guard ctx.depth < CFIContext.maxStateDepth else {
                    throw .stateStackOverflow(section: sk, offset: o, limit: CFIContext.maxStateDepth)
                }
                ctx.stack[ctx.depth] = CFIContext.State(cfa: row.cfa, registers: row.registers)
                ctx.depth += 1
            case DW_CFA.restore_state:
                guard ctx.depth > 0 else { throw .stateStackUnderflow(section: sk, offset: o) }
                ctx.depth -= 1
                row.cfa = ctx.stack[ctx.depth].cfa
                row.registers = ctx.stack[ctx.depth].registers
            case DW_CFA.def_cfa:
                // Register and non-factored ULEB128 offset.
                let reg = try register(&r)
                let n = try r.uleb128()
                guard n <= UInt64(Int64.max) else { throw .offsetOverflow(section: sk, offset: o) }
                row.cfa = .registerOffset(reg, Int64(n))
            case DW_CFA.def_cfa_sf:
                // Register and factored SLEB128 offset.
                let reg = try register(&r)
                row.cfa = .registerOffset(reg, try factored(try r.sleb128(), at: o))
            case DW_CFA.def_cfa_register:
                let reg = try register(&r)
                guard case .registerOffset(_, let n) = row.cfa else { throw .cfaNotRegisterBased(section: sk, offset: o) }
                row.cfa = .registerOffset(reg, n)
            case DW_CFA.def_cfa_offset:
                let n = try r.uleb128()
                guard n <= UInt64(Int64.max) else { throw .offsetOverflow(section: sk, offset: o) }
                guard case .registerOffset(let reg, _) = row.cfa else { throw .cfaNotRegisterBased(section: sk, offset: o) }
                row.cfa = .registerOffset(reg, Int64(n))
            case DW_CFA.def_cfa_offset_sf:
                let n = try factored(try r.sleb128(), at: o)
                guard case .registerOffset(let reg, _) = row.cfa else { throw .cfaNotRegisterBased(section: sk, offset: o) }
                row.cfa = .registerOffset(reg, n)
            case DW_CFA.def_cfa_expression:
                row.cfa = .expression(try expression(&r))
            case DW_CFA.expression:
                let reg = try register(&r)
                try set(reg, .expression(try expression(&r)), at: o)
            case DW_CFA.offset_extended_sf:
                let reg = try register(&r)
                try set(reg, .offset(try factored(try r.sleb128(), at: o)), at: o)
            case DW_CFA.val_offset:
                let reg = try register(&r)
                try set(reg, .valOffset(try factored(try r.uleb128(), at: o)), at: o)
            case DW_CFA.val_offset_sf:
                let reg = try register(&r)
                try set(reg, .valOffset(try factored(try r.sleb128(), at: o)), at: o)
            case DW_CFA.val_expression:
                let reg = try register(&r)
                try set(reg, .valExpression(try expression(&r)), at: o)
            case DW_CFA.GNU_args_size:
                // Non-factored ULEB128 (GCC unwind-dw2.c).
                row.argumentsSize = try r.uleb128()
            case DW_CFA.GNU_negative_offset_extended:
                // Like offset_extended with the offset negated (obsolete; GCC unwind-dw2.c).
                let reg = try register(&r)
                let n = try factored(try r.uleb128(), at: o)
                try set(reg, .offset(0 &- n), at: o)
            default:
                // Includes DW_CFA_GNU_window_save (SPARC; AArch64's negate_ra_state).
                throw .unknownInstruction(section: sk, offset: o, opcode: opcode)
            }
            switch step {
            case .next: continue
            case .found: return true
            case .finished: return false
            }
        }
        guard fde != nil else { return false }
        // The last row runs to the end of the FDE's range.
        if row.start < end {
            row.end = end
            if stopAt != nil { return true }
            body(row)
        }
        return false
    }
}
