import SprofBase
import SprofELF

extension ELFFile {
    /// The address this file states (``StatedAddress``, samply's "SVMA") for
    /// `address` in a process where `mapping` maps this file:
    ///
    ///     fileOffset = address - mapping.start + mapping.fileOffset
    ///     stated     = fileOffset - p_offset + p_vaddr
    ///
    /// with `p_offset`, `p_vaddr` those of the `PT_LOAD` segment whose file
    /// bytes `[p_offset, p_offset + p_filesz)` hold `fileOffset` (gABI
    /// "Program Header": a segment's byte at `p_offset + k` is loaded at
    /// `p_vaddr + k` plus the load bias). The two differ by the load bias,
    /// `mapping.start - mapping.fileOffset - (p_vaddr - p_offset)`: 0 for a
    /// non-PIE executable (`ET_EXEC`), where the process address is already
    /// the stated one. samply calls `address - image base` the "relative
    /// address"; that is not this (it is the stated address only when the
    /// first segment's `p_vaddr` is 0), and a bare file offset is neither.
    ///
    /// The segment is chosen by the address's own file offset, not by
    /// `mapping.fileOffset`: mappings start at page boundaries, so a mapping
    /// of the second segment can begin at a file offset that still belongs to
    /// the first (or to none). When two segments hold the offset, the one
    /// whose `PF_X` agrees with the mapping's `x` permission wins.
    ///
    /// Nil when `address` is outside `mapping` or its file offset is in no
    /// segment's file bytes (the zero-filled tail of `.bss`, page padding);
    /// nothing that executes lives there. Arithmetic wraps, as the loader's
    /// does; nothing here traps on a corrupt header or mapping.
    public func statedAddress(of address: ProcessAddress, in mapping: Mapping) -> StatedAddress? {
        guard mapping.contains(address) else { return nil }
        let offset = FileOffset(mapping.fileOffset.rawValue &+ (address.rawValue &- mapping.start.rawValue))
        var found: ProgramHeader?
        for p in programHeaders where p.type == .load && p.containsFileOffset(offset) {
            if found == nil || p.flags.contains(.execute) == mapping.isExecutable { found = p }
            if p.flags.contains(.execute) == mapping.isExecutable { break }
        }
        guard let p = found else { return nil }
        return StatedAddress(offset.rawValue &- p.offset.rawValue &+ p.virtualAddress.rawValue)
    }
}
