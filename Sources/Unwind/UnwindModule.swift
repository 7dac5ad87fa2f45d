import SprofBase
import SprofELF

/// One binary (executable, shared library or vDSO image) ready for
/// unwinding: its ELF file, its CFI compiled into an `UnwindTable`, and what
/// the generic path needs to evaluate CFI the table could not compile.
/// Immutable after init, shared by every process mapping the binary.
public final class UnwindModule: @unchecked Sendable {
    public let elf: ELFFile
    /// A separate debug file (`.gnu_debuglink` / build-id path) whose
    /// `.debug_frame` covers code the binary's `.eh_frame` does not.
    public let debugELF: ELFFile?
    public let table: UnwindTable
    let cfi: ModuleCFI
    /// Executable PT_LOAD segments: (stated start, stated end, file offset).
    private let textSegments: [(start: UInt64, end: UInt64, offset: UInt64)]

    /// The most table rows one module may compile to, for modules loaded
    /// on this thread (task) now: a ``ModuleCache`` sets it around each load
    /// from its ``ModuleCache/maxModuleBytes``. Unbounded outside one.
    @TaskLocal public static var maxTableRows = Int.max

    /// - Throws: `.tableTooLarge` when the CFI would make more than
    ///   ``maxTableRows`` rows.
    public init(elf: ELFFile, debugELF: ELFFile? = nil) throws(UnwindError) {
        self.elf = elf
        self.debugELF = debugELF
        cfi = try ModuleCFI(elf: elf, debugELF: debugELF)
        table = try cfi.compileTable(maxRows: Self.maxTableRows)
        textSegments = elf.programHeaders.filter { $0.type == .load && $0.flags.contains(.execute) }.map {
            ($0.virtualAddress.rawValue, $0.virtualAddress.rawValue &+ $0.fileSize, $0.offset.rawValue)
        }
    }

    @inlinable public func rule(at statedAddress: UInt64) -> UnwindRuleX86_64 {
        table.rule(at: statedAddress)
    }

    /// Whether the code before `statedAddress` ends with a call instruction.
    func followsCall(statedAddress: UInt64) -> Bool {
        for seg in textSegments where statedAddress > seg.start && statedAddress <= seg.end {
            let end = Int(seg.offset &+ (statedAddress &- seg.start))
            let start = max(Int(seg.offset), end - 8)
            guard end <= elf.bytes.count, start < end else { return false }
            return CallDetectionX86_64.endsWithCall(UnsafeRawBufferPointer(rebasing: elf.bytes[start..<end]))
        }
        return false
    }

    /// Evaluates a `.generic` rule's FDE for `address` (stated).
    /// `.success(nil)` means the outermost frame (return address undefined).
    func genericStep(rule: UnwindRuleX86_64, address: UInt64, bias: UInt64, registers: RegistersX86_64,
                     stack: StackMemory) -> Result<(RegistersX86_64, exactIP: Bool)?, UnwindStop> {
        cfi.step(operand: rule.operand, address: address, bias: bias, registers: registers, stack: stack)
    }

    /// Bytes held for this module beyond the mapped file (the table).
    public var memoryBytes: Int { table.memoryBytes }
}
