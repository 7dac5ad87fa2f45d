import SprofBase
import SprofELF

extension ELFFile {
    /// The address this file states (``StatedAddress``, samply's "SVMA") for
    /// `address` in a process where `mapping` maps this file:
    ///
    ///     fileOffset = address - mapping.start + mapping.fileOffset
    ///     stated     = fileOffset - p_offset + p_vaddr
    ///
    /// with `p_offset`, `p_vaddr` those of the `PT_LOAD` segment the mapping
    /// was made for (below), whose file bytes `[p_offset, p_offset + p_filesz)`
    /// hold `fileOffset` (gABI
    /// "Program Header": a segment's byte at `p_offset + k` is loaded at
    /// `p_vaddr + k` plus the load bias). The two differ by the load bias,
    /// `mapping.start - mapping.fileOffset - (p_vaddr - p_offset)`: 0 for a
    /// non-PIE executable (`ET_EXEC`), where the process address is already
    /// the stated one. samply calls `address - image base` the "relative
    /// address"; that is not this (it is the stated address only when the
    /// first segment's `p_vaddr` is 0), and a bare file offset is neither.
    ///
    /// The segment is the one the mapping was made for. The loader maps each
    /// `PT_LOAD` from `p_offset` rounded down to a page (taken as `p_align`
    /// when that is a power of two from 4 KiB to 64 KiB, the page sizes of
    /// x86-64 and AArch64 kernels, else 4 KiB), so a mapping can
    /// begin with the tail of the previous segment's bytes (lld packs
    /// segments: a Rust release binary's `R E` segment starts at file offset
    /// 0x17170, its mapping at 0x17000, inside the `R` segment's bytes). Of
    /// the segments whose page-rounded file range holds `mapping.fileOffset`,
    /// the one whose `PF_X` agrees with the mapping's `x` permission wins,
    /// then the one starting last. The address's own file offset must then
    /// lie in that segment's bytes `[p_offset, p_offset + p_filesz)`, or in
    /// those of a segment with the same `p_vaddr - p_offset` (two segments
    /// the kernel merged into one mapping).
    ///
    /// Nil when `address` is outside `mapping`, when no segment could have
    /// made the mapping, or when the address's bytes belong to no segment of
    /// the mapping (page padding, the previous segment's tail, the
    /// zero-filled end of `.bss`); nothing that executes lives there.
    /// Arithmetic wraps, as the loader's does; nothing here traps on a
    /// corrupt header or mapping. SprofELF's `loadBias(mappingStart:mappingOffset:)`
    /// chooses the mapping's segment the same way, by page and start, but
    /// without the permission check.
    public func statedAddress(of address: ProcessAddress, in mapping: Mapping) -> StatedAddress? {
        guard mapping.contains(address) else { return nil }
        let m = mapping.fileOffset.rawValue
        var made: ProgramHeader?
        for p in programHeaders where p.type == .load {
            let page = p.alignment >= 0x1000 && p.alignment <= 0x1_0000 && p.alignment & (p.alignment - 1) == 0
                ? p.alignment : 0x1000
            let first = p.offset.rawValue & ~(page - 1)
            guard m >= first && m < p.offset.rawValue &+ p.fileSize else { continue }
            guard let best = made else { made = p; continue }
            let fits = p.flags.contains(.execute) == mapping.isExecutable
            let bestFits = best.flags.contains(.execute) == mapping.isExecutable
            if fits && !bestFits {
                made = p
            } else if fits == bestFits && p.offset > best.offset {
                made = p
            }
        }
        guard let segment = made else { return nil }
        let offset = FileOffset(m &+ (address.rawValue &- mapping.start.rawValue))
        let delta = segment.virtualAddress.rawValue &- segment.offset.rawValue
        guard segment.containsFileOffset(offset) || programHeaders.contains(where: {
            $0.type == .load && $0.containsFileOffset(offset) && $0.virtualAddress.rawValue &- $0.offset.rawValue == delta
        }) else { return nil }
        return StatedAddress(offset.rawValue &+ delta)
    }
}
