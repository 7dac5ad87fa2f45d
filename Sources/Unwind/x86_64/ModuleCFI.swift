import SprofBase
import SprofELF
import Synchronization

/// A binary's CFI sections, compiled into `UnwindRuleX86_64` rows, and the
/// generic evaluator for the rows that do not compile.
final class ModuleCFI: @unchecked Sendable {
    let path: String
    let ehFrame: CallFrameSection?
    let debugFrame: CallFrameSection?
    /// One interpreter context for generic steps, behind a lock: generic
    /// rows (PLT stubs, signal frames) are a small share of frames.
    private let context = Mutex(CFIContext())

    init(elf: ELFFile, debugELF: ELFFile?) throws(UnwindError) {
        path = elf.path
        do {
            ehFrame = try CallFrameSection.ehFrame(of: elf)
            debugFrame = try CallFrameSection.debugFrame(of: elf) ?? debugELF.flatMap { try CallFrameSection.debugFrame(of: $0) }
        } catch let e as CFIError {
            throw .cfi(path: elf.path, e)
        } catch {
            throw .moduleUnavailable(path: elf.path, reason: "\(error)")
        }
    }

    /// `.generic` rules point at their FDE: eh_frame offsets as they are,
    /// debug_frame offsets as `-(offset + 1)`.
    static func genericOperand(offset: Int, debug: Bool) -> Int32 { debug ? -Int32(offset) - 1 : Int32(offset) }

    /// Every FDE of `.eh_frame`, then those of `.debug_frame` that start
    /// where `.eh_frame` has nothing, each row translated to a rule. An FDE
    /// that fails to parse or run is left out (its range gets `.noCFI`).
    /// Before it could pass `maxRows` rows it stops and throws
    /// `.tableTooLarge`: the rows collected are the most memory it takes,
    /// and the CFI it reads is bounded with them.
    func compileTable(maxRows: Int = .max) throws(UnwindError) -> UnwindTable {
        var rows: [(start: UInt64, end: UInt64, rule: UnwindRuleX86_64)] = []
        var ehRanges: [(UInt64, UInt64)] = []
        let ctx = CFIContext()
        for (section, debug) in [(ehFrame, false), (debugFrame, true)] {
            guard let section else { continue }
            if debug { ehRanges.sort { $0.0 < $1.0 } }
            var it = section.fdes()
            while true {
                let next: FrameDescriptionEntry?
                do { next = try it.next() } catch { break }  // the rest of the section is unreadable
                guard let fde = next else { break }
                let start = fde.initialLocation.rawValue, end = fde.endAddress.rawValue
                guard end > start else { continue }
                if debug && Self.covered(start, by: ehRanges) { continue }
                if !debug { ehRanges.append((start, end)) }
                let operand = Self.genericOperand(offset: fde.offset, debug: debug)
                let signal = fde.cie.augmentation.isSignalFrame
                // Each row but the first is made by an advance instruction (at
                // least a byte): an FDE makes at most its instruction bytes + 1
                // rows. Checked before running it, so one FDE of a hundred
                // megabytes is refused without being read.
                if rows.count + fde.instructions.count + 1 > maxRows {
                    throw .tableTooLarge(path: path, rows: rows.count + fde.instructions.count + 1, limit: maxRows)
                }
                do {
                    try section.forEachRow(of: fde, context: ctx) { row in
                        rows.append((row.start.rawValue, row.end.rawValue,
                                     signal ? .generic(fdeOffset: operand) : Self.rule(for: row, operand: operand)))
                    }
                } catch {
                    continue
                }
            }
        }
        return UnwindTable(consuming: &rows)
    }

    private static func covered(_ address: UInt64, by ranges: [(UInt64, UInt64)]) -> Bool {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].0 <= address { lo = mid + 1 } else { hi = mid }
        }
        return lo > 0 && address < ranges[lo - 1].1
    }

    /// The compact rule for a row, or `.generic` when it does not fit one.
    static func rule(for row: CFIRow, operand: Int32) -> UnwindRuleX86_64 {
        let ra = row.rule(for: DWARFRegister.X86_64.returnAddress)
        if ra == .undefined { return .endOfStack }
        guard case .offset(-8)? = ra else { return .generic(fdeOffset: operand) }
        // The caller's sp is the CFA unless the CFI says otherwise.
        if let sp = row.rule(for: DWARFRegister.X86_64.rsp), sp != .valOffset(0) { return .generic(fdeOffset: operand) }
        guard case .registerOffset(let reg, let offset) = row.cfa, let o = Int32(exactly: offset) else {
            return .generic(fdeOffset: operand)
        }
        let bpSaved: Int16?
        switch row.rule(for: DWARFRegister.X86_64.rbp) {
        case nil, .sameValue?: bpSaved = nil
        case .offset(let b)?:
            guard let b16 = Int16(exactly: b) else { return .generic(fdeOffset: operand) }
            bpSaved = b16
        default: return .generic(fdeOffset: operand)
        }
        switch reg {
        case DWARFRegister.X86_64.rsp:
            return bpSaved.map { UnwindRuleX86_64(kind: .spOffsetBPSaved, cfaOffset: o, bpOffset: $0) }
                ?? UnwindRuleX86_64(kind: .spOffset, cfaOffset: o)
        case DWARFRegister.X86_64.rbp:
            return bpSaved.map { UnwindRuleX86_64(kind: .bpOffsetBPSaved, cfaOffset: o, bpOffset: $0) }
                ?? UnwindRuleX86_64(kind: .bpOffset, cfaOffset: o)
        default:
            return .generic(fdeOffset: operand)
        }
    }

    /// Evaluates a `.generic` row with the full CFI interpreter and the
    /// DWARF expression evaluator, reading memory only from the captured
    /// stack. `.success(nil)`: the return address is undefined (outermost
    /// frame). The flag says the FDE is a signal frame (`S` augmentation):
    /// the caller's ip is then the interrupted instruction itself, not a
    /// return address, and is looked up as is.
    func step(operand: Int32, address: UInt64, bias: UInt64, registers: RegistersX86_64,
              stack: StackMemory) -> Result<(RegistersX86_64, exactIP: Bool)?, UnwindStop> {
        let debug = operand < 0
        guard let section = debug ? debugFrame : ehFrame else { return .failure(.badCFI) }
        let offset = debug ? Int(-(operand + 1)) : Int(operand)
        func readRegister(_ r: DWARFRegister) -> UInt64? {
            switch r {
            case DWARFRegister.X86_64.rbp: return registers.bp
            case DWARFRegister.X86_64.rsp: return registers.sp
            case DWARFRegister.X86_64.returnAddress: return registers.ip
            default: return nil
            }
        }
        func readMemory(_ a: ProcessAddress, _ size: Int) -> UInt64? {
            guard let v = stack.read(a.rawValue) else { return nil }
            return size >= 8 ? v : v & ((1 << UInt64(size * 8)) - 1)
        }
        do throws(CFIError) {
            let fde = try section.fde(at: offset)
            let row = try context.withLock { ctx throws(CFIError) in
                try section.row(for: StatedAddress(address), in: fde, context: ctx)
            }
            let cfa = try section.cfa(of: row, loadBias: bias, readRegister: readRegister, readMemory: readMemory)
            guard let ra = try section.recover(DWARFRegister.X86_64.returnAddress,
                                               rule: row.rule(for: DWARFRegister.X86_64.returnAddress),
                                               cfa: cfa, loadBias: bias, readRegister: readRegister, readMemory: readMemory)
            else { return .success(nil) }
            let bp = try section.recover(DWARFRegister.X86_64.rbp, rule: row.rule(for: DWARFRegister.X86_64.rbp),
                                         cfa: cfa, loadBias: bias, readRegister: readRegister, readMemory: readMemory)
            var sp = cfa.rawValue
            if let spRule = row.rule(for: DWARFRegister.X86_64.rsp) {
                guard let v = try section.recover(DWARFRegister.X86_64.rsp, rule: spRule, cfa: cfa, loadBias: bias,
                                                  readRegister: readRegister, readMemory: readMemory)
                else { return .failure(.badCFI) }
                sp = v
            }
            return .success((RegistersX86_64(ip: ra, sp: sp, bp: bp ?? registers.bp), fde.cie.augmentation.isSignalFrame))
        } catch {
            switch error {
            case .memoryUnreadable: return .failure(.stackReadOutOfRange)
            default: return .failure(.badCFI)
            }
        }
    }
}
