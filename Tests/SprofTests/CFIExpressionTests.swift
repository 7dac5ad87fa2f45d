import SprofBase
@testable import SprofUnwind
import XCTest

/// The DWARF expression evaluator (DWARF 5 §2.5) as CFI uses it: every
/// supported operation, the bounds (stack, steps, branch targets), and the
/// two expressions real x86_64 binaries carry — the PLT's CFA and glibc's
/// signal-frame register rules.
final class CFIExpressionTests: XCTestCase {
    typealias X = DWARFRegister.X86_64

    /// Evaluates `ops` with registers from `registers` and memory where
    /// byte `a` is `a & 0xff` in `readable` (little-endian words follow).
    func eval(_ ops: [UInt8], registers: [UInt16: UInt64] = [:], readable: Range<UInt64> = 0x1000..<0x2000,
              initial: UInt64? = nil, cfa: UInt64? = nil, loadBias: UInt64 = 0, maxSteps: Int = 1000,
              sectionOffset: Int = 0) throws -> UInt64 {
        try CFIBytes(ops).with { bytes in
            let e = DWARFExpression(bytes: bytes, sectionOffset: sectionOffset)
            return try e.evaluate(initialValue: initial, cfa: cfa, loadBias: loadBias, maxSteps: maxSteps,
                                  readRegister: { registers[$0.rawValue] },
                                  readMemory: { a, size in
                                      guard readable.contains(a.rawValue), readable.contains(a.rawValue + UInt64(size) - 1)
                                      else { return nil }
                                      var v: UInt64 = 0
                                      for i in 0..<UInt64(size) { v |= ((a.rawValue + i) & 0xff) << (8 * i) }
                                      return v
                                  })
        }
    }

    func evalError(_ ops: [UInt8], registers: [UInt16: UInt64] = [:], cfa: UInt64? = nil, maxSteps: Int = 1000,
                   sectionOffset: Int = 0) -> CFIError? {
        do {
            _ = try eval(ops, registers: registers, cfa: cfa, maxSteps: maxSteps, sectionOffset: sectionOffset)
            return nil
        } catch {
            return error as? CFIError
        }
    }

    static func s(_ v: Int64) -> UInt64 { UInt64(bitPattern: v) }

    // MARK: - Literals and registers

    func testLiterals() throws {
        for n in 0..<32 { XCTAssertEqual(try eval([DW_OP.lit0 + UInt8(n)]), UInt64(n)) }
        XCTAssertEqual(try eval([0x08, 0xff]), 255)                              // const1u
        XCTAssertEqual(try eval([0x09, 0xff]), Self.s(-1))                        // const1s
        XCTAssertEqual(try eval([0x0a, 0x34, 0x12]), 0x1234)                      // const2u
        XCTAssertEqual(try eval([0x0b, 0x00, 0x80]), Self.s(-0x8000))             // const2s
        XCTAssertEqual(try eval([0x0c, 0x78, 0x56, 0x34, 0x12]), 0x1234_5678)     // const4u
        XCTAssertEqual(try eval([0x0d, 0xfe, 0xff, 0xff, 0xff]), Self.s(-2))      // const4s
        XCTAssertEqual(try eval([0x0e] + CFIBuilder.le(UInt64(0x1122_3344_5566_7788))), 0x1122_3344_5566_7788)  // const8u
        XCTAssertEqual(try eval([0x0f] + CFIBuilder.le(Self.s(-3))), Self.s(-3))  // const8s
        XCTAssertEqual(try eval([0x10, 0xb9, 0x64]), 12857)                       // constu
        XCTAssertEqual(try eval([0x11, 0xff, 0x7e]), Self.s(-129))                // consts
        XCTAssertEqual(try eval([0x03] + CFIBuilder.le(UInt64(0x4000)), loadBias: 0x5555_0000), 0x5555_4000)  // addr
        XCTAssertEqual(try eval([0x96, 0x96, 0x31, 0x96]), 1)                     // nop
        XCTAssertEqual(try eval([], initial: 42), 42, "the pushed CFA is the result of an empty expression")
    }

    func testRegisters() throws {
        let regs: [UInt16: UInt64] = [6: 0x7fff_0000, 7: 0x7ffe_fff0, 16: 0x40_1000, 40: 99]
        XCTAssertEqual(try eval([0x56], registers: regs), 0x7fff_0000)                      // reg6 (rbp)
        XCTAssertEqual(try eval([0x77, 0x08], registers: regs), 0x7ffe_fff8)                // breg7 (rsp) +8
        XCTAssertEqual(try eval([0x76, 0x70], registers: regs), 0x7ffe_fff0)                // breg6 -16
        XCTAssertEqual(try eval([0x90, 0x10], registers: regs), 0x40_1000)                  // regx 16
        XCTAssertEqual(try eval([0x92, 0x28, 0x7f], registers: regs), 98)                   // bregx 40 -1
        XCTAssertEqual(try eval([0x6f], registers: [31: 5]), 5)                             // reg31
        XCTAssertEqual(try eval([0x8f, 0x01], registers: [31: 5]), 6)                       // breg31 +1
        guard case .registerUnavailable(.expression, 0, DWARFRegister(3))? = evalError([0x73, 0x00], registers: regs)
        else { return XCTFail() }
        guard case .badRegister? = evalError([0x90, 0x80, 0x80, 0x04]) else { return XCTFail() }
    }

    // MARK: - Stack operations

    func testStackOperations() throws {
        XCTAssertEqual(try eval([0x35, 0x12, 0x22]), 10)                 // lit5 dup plus
        XCTAssertEqual(try eval([0x35, 0x36, 0x13]), 5)                  // lit5 lit6 drop
        XCTAssertEqual(try eval([0x35, 0x36, 0x14]), 5)                  // lit5 lit6 over
        XCTAssertEqual(try eval([0x31, 0x32, 0x33, 0x15, 0x00]), 3)      // pick 0
        XCTAssertEqual(try eval([0x31, 0x32, 0x33, 0x15, 0x02]), 1)      // pick 2
        XCTAssertEqual(try eval([0x35, 0x36, 0x16]), 5)                  // lit5 lit6 swap
        XCTAssertEqual(try eval([0x35, 0x36, 0x16, 0x13]), 6)
        // rot: [1 2 3] → [3 1 2] (top 2, then 1, then 3).
        XCTAssertEqual(try eval([0x31, 0x32, 0x33, 0x17]), 2)
        XCTAssertEqual(try eval([0x31, 0x32, 0x33, 0x17, 0x13]), 1)
        XCTAssertEqual(try eval([0x31, 0x32, 0x33, 0x17, 0x13, 0x13]), 3)
        // Underflow for each operation that pops.
        for op: [UInt8] in [[0x12], [0x13], [0x14], [0x30, 0x14], [0x30, 0x15, 0x01], [0x30, 0x16], [0x30, 0x30, 0x17],
                            [0x06], [0x94, 0x04], [0x19], [0x1f], [0x20], [0x23, 0x01], [0x28, 0x00, 0x00]] {
            guard case .stackUnderflow? = evalError(op) else { return XCTFail("\(op): \(String(describing: evalError(op)))") }
        }
        for op: UInt8 in [0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x21, 0x22, 0x24, 0x25, 0x26, 0x27, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e] {
            guard case .stackUnderflow? = evalError([0x31, op]) else { return XCTFail("\(op)") }
        }
        // 64 values fit; 65 do not.
        XCTAssertEqual(try eval([UInt8](repeating: 0x31, count: DWARFExpression.stackCapacity)), 1)
        guard case .stackOverflow? = evalError([UInt8](repeating: 0x31, count: DWARFExpression.stackCapacity + 1))
        else { return XCTFail() }
        // Nothing left on the stack.
        guard case .emptyResult? = evalError([]) else { return XCTFail() }
        guard case .emptyResult? = evalError([0x31, 0x13]) else { return XCTFail() }
    }

    // MARK: - Arithmetic, logic, comparisons

    func testArithmeticAndLogic() throws {
        let m5: [UInt8] = [0x09, 0xfb]  // const1s -5
        let m7: [UInt8] = [0x09, 0xf9]  // const1s -7
        XCTAssertEqual(try eval(m5 + [0x19]), 5)                                   // abs
        XCTAssertEqual(try eval([0x35, 0x19]), 5)
        XCTAssertEqual(try eval([0x3c, 0x3a, 0x1a]), 8)                            // 12 and 10
        XCTAssertEqual(try eval(m7 + [0x32, 0x1b]), Self.s(-3))                    // -7 div 2 (signed, toward zero)
        XCTAssertEqual(try eval([0x37, 0x32, 0x1b]), 3)
        XCTAssertEqual(try eval([0x0f] + CFIBuilder.le(Self.s(Int64.min)) + [0x09, 0xff, 0x1b]), Self.s(Int64.min),
                       "Int64.min / -1 wraps")
        XCTAssertEqual(try eval([0x35, 0x37, 0x1c]), Self.s(-2))                   // 5 minus 7
        XCTAssertEqual(try eval([0x37, 0x33, 0x1d]), 1)                            // 7 mod 3
        XCTAssertEqual(try eval(m7 + [0x33, 0x1d]), Self.s(-7) % 3, "mod is unsigned on the generic type")
        XCTAssertEqual(try eval([0x36, 0x37, 0x1e]), 42)                           // mul
        XCTAssertEqual(try eval([0x35, 0x1f]), Self.s(-5))                         // neg
        XCTAssertEqual(try eval([0x30, 0x20]), UInt64.max)                         // not
        XCTAssertEqual(try eval([0x3c, 0x33, 0x21]), 15)                           // 12 or 3
        XCTAssertEqual(try eval([0x35, 0x36, 0x22]), 11)                           // plus
        XCTAssertEqual(try eval([0x35, 0x23, 0x80, 0x01]), 133)                    // plus_uconst 128
        XCTAssertEqual(try eval([0x31, 0x34, 0x24]), 16)                           // 1 shl 4
        XCTAssertEqual(try eval([0x31, 0x08, 0x40, 0x24]), 0, "shift by 64")
        XCTAssertEqual(try eval([0x09, 0xff, 0x08, 0x3c, 0x25]), 15)               // -1 shr 60 (logical)
        XCTAssertEqual(try eval([0x09, 0xf0, 0x32, 0x26]), Self.s(-4))             // -16 shra 2
        XCTAssertEqual(try eval([0x09, 0xf0, 0x08, 0xff, 0x26]), UInt64.max, "shra by ≥ 64 fills with the sign")
        XCTAssertEqual(try eval([0x3c, 0x3a, 0x27]), 6)                            // 12 xor 10
        guard case .divisionByZero(.expression, 2)? = evalError([0x31, 0x30, 0x1b]) else { return XCTFail() }
        guard case .divisionByZero? = evalError([0x31, 0x30, 0x1d]) else { return XCTFail() }
    }

    func testComparisonsAreSigned() throws {
        let minus1: [UInt8] = [0x09, 0xff]
        let cases: [(UInt8, [UInt64])] = [  // op, result for (1 ? -1), (-1 ? 1), (1 ? 1)
            (0x29, [0, 0, 1]),  // eq
            (0x2a, [1, 0, 1]),  // ge
            (0x2b, [1, 0, 0]),  // gt
            (0x2c, [0, 1, 1]),  // le
            (0x2d, [0, 1, 0]),  // lt
            (0x2e, [1, 1, 0]),  // ne
        ]
        for (op, want) in cases {
            XCTAssertEqual(try eval([0x31] + minus1 + [op]), want[0], "op \(op)")
            XCTAssertEqual(try eval(minus1 + [0x31, op]), want[1], "op \(op)")
            XCTAssertEqual(try eval([0x31, 0x31, op]), want[2], "op \(op)")
        }
    }

    // MARK: - Control flow

    func testSkipAndBranch() throws {
        // lit9; litX; bra +1; lit5 → taken: 9, not taken: 5.
        XCTAssertEqual(try eval([0x39, 0x31, 0x28, 0x01, 0x00, 0x35]), 9)
        XCTAssertEqual(try eval([0x39, 0x30, 0x28, 0x01, 0x00, 0x35]), 5)
        XCTAssertEqual(try eval([0x33, 0x2f, 0x01, 0x00, 0x34]), 3)                // lit3; skip +1; lit4
        // A counted loop: n = 5; while n != 0 { n -= 1 } → 0, in 38 steps.
        //  0 lit5 | 1 dup | 2 lit0 | 3 eq | 4 bra +5 (→12) | 7 lit1 | 8 minus | 9 skip -11 (→1) | 12 end
        let loop: [UInt8] = [0x35, 0x12, 0x30, 0x29, 0x28, 0x05, 0x00, 0x31, 0x1c, 0x2f, 0xf5, 0xff]
        XCTAssertEqual(try eval(loop), 0)
        guard case .stepLimit(.expression, _, 20)? = evalError(loop, maxSteps: 20) else { return XCTFail() }
        // An endless loop ends at the step bound.
        guard case .stepLimit? = evalError([0x2f, 0xfd, 0xff]) else { return XCTFail() }
        guard case .stepLimit? = evalError([0x31, 0x12, 0x28, 0xfc, 0xff]) else { return XCTFail() }  // lit1; L: dup; bra L
        // Targets outside the expression; the end itself is fine.
        guard case .branchOutOfBounds? = evalError([0x2f, 0x10, 0x00]) else { return XCTFail() }
        guard case .branchOutOfBounds? = evalError([0x31, 0x2f, 0xf0, 0xff]) else { return XCTFail() }
        guard case .branchOutOfBounds? = evalError([0x31, 0x28, 0x02, 0x00, 0x30]) else { return XCTFail() }
        XCTAssertEqual(try eval([0x32, 0x31, 0x28, 0x01, 0x00, 0x30]), 2)
    }

    // MARK: - Memory

    func testDeref() throws {
        // Memory byte a holds a & 0xff in 0x1000..<0x2000.
        XCTAssertEqual(try eval([0x0a, 0x10, 0x10, 0x06]), 0x1716_1514_1312_1110)          // deref
        XCTAssertEqual(try eval([0x0a, 0x10, 0x10, 0x94, 0x01]), 0x10)                     // deref_size 1
        XCTAssertEqual(try eval([0x0a, 0x10, 0x10, 0x94, 0x02]), 0x1110)
        XCTAssertEqual(try eval([0x0a, 0x10, 0x10, 0x94, 0x04]), 0x1312_1110)
        XCTAssertEqual(try eval([0x0a, 0x10, 0x10, 0x94, 0x08]), 0x1716_1514_1312_1110)
        for size: UInt8 in [0, 9, 0xff] {
            guard case .badDerefSize(_, _, size)? = evalError([0x0a, 0x10, 0x10, 0x94, size]) else { return XCTFail("\(size)") }
        }
        guard case .memoryUnreadable(.expression, 3, ProcessAddress(0x2000), 8)? = evalError([0x0a, 0x00, 0x20, 0x06])
        else { return XCTFail() }
        guard case .memoryUnreadable(_, _, _, 2)? = evalError([0x0a, 0xff, 0x1f, 0x94, 0x02]) else { return XCTFail() }
    }

    func testCallFrameCFAAndStackValue() throws {
        XCTAssertEqual(try eval([0x9c, 0x23, 0x10], cfa: 0x7000), 0x7010)
        guard case .unsupportedOperation(_, 0, 0x9c)? = evalError([0x9c]) else { return XCTFail("needs a CFA") }
        XCTAssertEqual(try eval([0x33, 0x9f, 0x34]), 3, "DW_OP_stack_value ends the expression")
    }

    func testUnsupportedOperations() throws {
        // Reserved, piece, fbreg, xderef, calls, TLS, typed ops, GNU extensions.
        for op: UInt8 in [0x00, 0x01, 0x02, 0x04, 0x05, 0x07, 0x18, 0x91, 0x93, 0x95, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9d, 0x9e,
                          0xa0, 0xa3, 0xa5, 0xe0, 0xf0, 0xf3, 0xff] {
            guard case .unsupportedOperation(_, 1, op)? = evalError([0x31, op, 0x00, 0x00, 0x00, 0x00]) else {
                return XCTFail("op \(op): \(String(describing: evalError([0x31, op])))")
            }
        }
    }

    func testTruncatedOperandsNameTheSectionOffset() throws {
        for ops: [UInt8] in [[0x03, 1, 2], [0x08], [0x0a, 1], [0x0c, 1, 2, 3], [0x0e, 1], [0x10], [0x10, 0x80], [0x11],
                             [0x15], [0x23], [0x28, 0x00], [0x2f], [0x70], [0x92, 0x01], [0x94]] {
            guard case .truncated(.expression, let o, _, let limit)? = evalError(ops, sectionOffset: 0x500) else {
                return XCTFail("\(ops): \(String(describing: evalError(ops, sectionOffset: 0x500)))")
            }
            XCTAssertGreaterThanOrEqual(o, 0x500)
            XCTAssertEqual(limit, 0x500 + ops.count)
        }
        guard case .leb128Overflow(.expression, 0x501)? = evalError([0x10] + [UInt8](repeating: 0xff, count: 10) + [0x7f],
                                                                    sectionOffset: 0x500) else { return XCTFail() }
        let e = evalError([0x31, 0x1b], sectionOffset: 0x500)
        XCTAssertEqual(e?.offset, 0x501)
        XCTAssertTrue(e?.description.hasPrefix("expression+0x501: ") ?? false, e?.description ?? "")
    }

    // MARK: - Real expressions

    /// The CFA of a lazy-binding PLT entry, as GCC/ld write it for x86_64
    /// `.plt` (libc's `.eh_frame` at 0x18, `readelf -wf`):
    /// `DW_OP_breg7 (rsp): 8; DW_OP_breg16 (rip): 0; DW_OP_lit15; DW_OP_and;
    /// DW_OP_lit11; DW_OP_ge; DW_OP_lit3; DW_OP_shl; DW_OP_plus`.
    /// Each 16-byte entry is `jmp *GOT(%rip)` (6 bytes), `push $n` (5),
    /// `jmp .plt` (5): after the push (offset 11 on) one more word is on the stack.
    static let pltCFA: [UInt8] = [0x77, 0x08, 0x80, 0x00, 0x3f, 0x1a, 0x3b, 0x2a, 0x33, 0x24, 0x22]

    func testPLTExpression() throws {
        let rsp: UInt64 = 0x7ffd_1230
        for entry: UInt64 in [0x26010, 0x26020, 0x26350] {
            for k: UInt64 in 0..<16 {
                let cfa = try eval(Self.pltCFA, registers: [X.rsp.rawValue: rsp, X.returnAddress.rawValue: entry + k])
                XCTAssertEqual(cfa, k >= 11 ? rsp + 16 : rsp + 8, "rip & 15 = \(k)")
            }
        }
    }

    /// glibc's x86_64 `__restore_rt` (sysdeps/unix/sysv/linux/x86_64/
    /// libc_sigaction.c): the CFA is `*(rsp + 160)` (the saved rsp in the
    /// ucontext on the stack) and every register is at `rsp + offset`
    /// (`DW_CFA_expression: rN (DW_OP_breg7 (rsp): offset)`).
    func testSignalFrameRules() throws {
        // ucontext_t: uc_flags 8, uc_link 8, uc_stack 24, then uc_mcontext.gregs[]
        // in REG_R8 … REG_RIP order (<sys/ucontext.h>): r8 at 40, …, rsp at 160, rip at 168.
        let order: [DWARFRegister] = [X.r8, X.r9, X.r10, X.r11, X.r12, X.r13, X.r14, X.r15, X.rdi, X.rsi, X.rbp, X.rbx,
                                      X.rdx, X.rax, X.rcx, X.rsp, X.returnAddress]
        var b = CFIBuilder(kind: .ehFrame, address: 0x1_0000)
        let cie = b.cie(augmentation: "zRS", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: [])
        var program: [UInt8] = [0x0f, 0x04, 0x77, 0xa0, 0x01, 0x06]  // def_cfa_expression: breg7 160; deref
        for (i, reg) in order.enumerated() {
            let offset = CFITests.sleb(Int64(40 + 8 * i))
            program += [0x10, UInt8(reg.rawValue), UInt8(1 + offset.count), 0x77] + offset
        }
        let f = b.fde(cie: cie, start: 0x3c04f, length: 10, instructions: program)
        let rsp: UInt64 = 0x7ffc_0000
        // Memory: the word at rsp + n holds 0xAA00 + n.
        let read: (ProcessAddress, Int) -> UInt64? = { a, size in
            guard size == 8, a.rawValue >= rsp, a.rawValue < rsp + 0x1000, a.rawValue % 8 == 0 else { return nil }
            return 0xaa00 + (a.rawValue - rsp)
        }
        try b.withSection { s in
            let fde = try s.fde(at: f)
            XCTAssertTrue(fde.cie.augmentation.isSignalFrame)
            let row = try s.row(for: StatedAddress(0x3c04f), in: fde)
            let regs: (DWARFRegister) -> UInt64? = { $0 == X.rsp ? rsp : nil }
            let cfa = try s.cfa(of: row, readRegister: regs, readMemory: read)
            XCTAssertEqual(cfa, ProcessAddress(0xaa00 + 160))
            for (i, reg) in order.enumerated() {
                let v = try s.recover(reg, rule: row.rule(for: reg), cfa: cfa, readRegister: regs, readMemory: read)
                XCTAssertEqual(v, 0xaa00 + UInt64(40 + 8 * i), "\(reg)")
            }
        }
    }

    func testRecoverEveryRuleKind() throws {
        var b = CFIBuilder(kind: .ehFrame, address: 0x1_0000)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: CFITests.standardCIE)
        let f = b.fde(cie: cie, start: 0x1000, length: 0x10, instructions: [
            0x83, 0x02,                    // rbx at cfa-16
            0x14, 0x06, 0x02,              // rbp = cfa-16
            0x09, 0x0c, 0x0d,              // r12 in r13
            0x08, 0x0e,                    // r14 same value
            0x07, 0x0f,                    // r15 undefined
            0x10, 0x01, 0x03, 0x08, 0x18, 0x22,  // rdx at [cfa + 24] (the CFA is pushed first; const1u 24; plus)
            0x16, 0x02, 0x03, 0x08, 0x20, 0x1c,  // rcx = cfa - 32 (const1u 32; minus)
        ])
        let sp: UInt64 = 0x1800
        try b.withSection { s in
            let row = try s.row(for: StatedAddress(0x1004), in: try s.fde(at: f))
            let regs: [UInt16: UInt64] = [X.rsp.rawValue: sp, X.r13.rawValue: 13, X.r14.rawValue: 14, X.rax.rawValue: 7]
            let mem: (ProcessAddress, Int) -> UInt64? = { a, _ in a.rawValue &* 3 }
            let read: (DWARFRegister) -> UInt64? = { regs[$0.rawValue] }
            let cfa = try s.cfa(of: row, readRegister: read, readMemory: mem)
            XCTAssertEqual(cfa, ProcessAddress(sp + 8))
            func rec(_ r: DWARFRegister) throws -> UInt64? {
                try s.recover(r, rule: row.rule(for: r), cfa: cfa, readRegister: read, readMemory: mem)
            }
            XCTAssertEqual(try rec(X.returnAddress), (sp + 8 - 8) * 3)
            XCTAssertEqual(try rec(X.rbx), (sp + 8 - 16) * 3)
            XCTAssertEqual(try rec(X.rbp), sp + 8 - 16)
            XCTAssertEqual(try rec(X.r12), 13)
            XCTAssertEqual(try rec(X.r14), 14)
            XCTAssertNil(try rec(X.r15))
            XCTAssertEqual(try rec(X.rdx), (sp + 8 + 24) * 3)
            XCTAssertEqual(try rec(X.rcx), sp + 8 - 32)
            XCTAssertEqual(try rec(X.rax), 7, "no rule: same value")
            XCTAssertThrowsError(try rec(X.rsi), "no rule and no value")
        }
    }
}
