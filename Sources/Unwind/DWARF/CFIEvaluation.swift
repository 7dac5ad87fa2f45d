import SprofBase

/// Applying a row's rules to one frame: the generic fallback evaluator
/// (framehop translates the common rows to compact rules; anything those
/// cannot express comes here). Register and memory access go through
/// callbacks, so this works on captured stack bytes as well as on a live
/// process.
extension CallFrameSection {
    /// The CFA of the frame `row` describes (DWARF 5 §6.4.1, the CFA column).
    ///
    /// - Parameters:
    ///   - readRegister: a register's value in that frame, nil when unknown.
    ///   - readMemory: `size` bytes at an address, nil when unreadable.
    ///   - loadBias: process address minus stated address, for `DW_OP_addr`.
    public func cfa(of row: CFIRow, loadBias: UInt64 = 0,
                    readRegister: (DWARFRegister) -> UInt64?,
                    readMemory: (ProcessAddress, Int) -> UInt64?) throws(CFIError) -> ProcessAddress {
        switch row.cfa {
        case .undefined:
            throw .cfaUndefined(section: sectionKind, offset: 0)
        case .registerOffset(let reg, let offset):
            guard let v = readRegister(reg) else {
                throw .registerUnavailable(section: sectionKind, offset: 0, register: reg)
            }
            return ProcessAddress(v &+ UInt64(bitPattern: offset))
        case .expression(let e):
            // §6.4.2.2 DW_CFA_def_cfa_expression: evaluated with an empty stack;
            // DW_OP_call_frame_cfa is meaningless here.
            return ProcessAddress(try expression(e).evaluate(loadBias: loadBias, readRegister: readRegister,
                                                             readMemory: readMemory))
        }
    }

    /// The caller's value of `register` given its `rule` (nil: the CFI
    /// gives none, and the value is taken to be unchanged — the psABI
    /// default for callee-saved registers). Returns nil for
    /// ``RegisterRule/undefined`` (for the return address column: this is
    /// the outermost frame).
    public func recover(_ register: DWARFRegister, rule: RegisterRule?, cfa: ProcessAddress, loadBias: UInt64 = 0,
                        readRegister: (DWARFRegister) -> UInt64?,
                        readMemory: (ProcessAddress, Int) -> UInt64?) throws(CFIError) -> UInt64? {
        func value(_ reg: DWARFRegister) throws(CFIError) -> UInt64 {
            guard let v = readRegister(reg) else {
                throw .registerUnavailable(section: sectionKind, offset: 0, register: reg)
            }
            return v
        }
        func load(_ a: ProcessAddress) throws(CFIError) -> UInt64 {
            guard let v = readMemory(a, Int(addressSize)) else {
                throw .memoryUnreadable(section: sectionKind, offset: 0, address: a, size: Int(addressSize))
            }
            return v
        }
        switch rule {
        case nil, .sameValue?:
            return try value(register)
        case .undefined?:
            return nil
        case .offset(let n)?:
            return try load(cfa.advanced(by: n))
        case .valOffset(let n)?:
            return cfa.advanced(by: n).rawValue
        case .register(let other)?:
            return try value(other)
        case .expression(let e)?:
            let a = try expression(e).evaluate(initialValue: cfa.rawValue, cfa: cfa.rawValue, loadBias: loadBias,
                                               readRegister: readRegister, readMemory: readMemory)
            return try load(ProcessAddress(a))
        case .valExpression(let e)?:
            return try expression(e).evaluate(initialValue: cfa.rawValue, cfa: cfa.rawValue, loadBias: loadBias,
                                              readRegister: readRegister, readMemory: readMemory)
        }
    }
}
