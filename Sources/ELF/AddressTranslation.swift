import SprofBase

extension ELFFile {
    /// The address the file states (SVMA) for the byte at `offset`, through
    /// the PT_LOAD segment whose file image contains it (ELF gABI, "Program
    /// Loading"): `svma = p_vaddr + (offset - p_offset)`. Nil when no
    /// loadable segment maps that byte.
    public func statedAddress(forFileOffset offset: FileOffset) -> StatedAddress? {
        for seg in programHeaders where seg.type == .load {
            if offset.rawValue >= seg.offset.rawValue && offset.rawValue < seg.offset.rawValue &+ seg.fileSize {
                return StatedAddress(seg.virtualAddress.rawValue &+ (offset.rawValue - seg.offset.rawValue))
            }
        }
        return nil
    }

    /// The load bias of a mapping of this file: `process address - stated
    /// address` for every byte of the mapping (a mapping never spans two
    /// segments with different biases: the loader maps each PT_LOAD
    /// separately, at `bias + p_vaddr` rounded down to a page). Nil when the
    /// mapping's offset falls in no PT_LOAD.
    public func loadBias(mappingStart: ProcessAddress, mappingOffset: FileOffset) -> UInt64? {
        // The mapping's first byte may precede the segment's p_offset (the
        // loader maps from p_offset rounded down to a page), and that page
        // can also hold the end of the previous segment: of the segments
        // whose page-rounded file range holds the offset, the one starting
        // last is the one this mapping was made for.
        var best: ProgramHeader?
        for seg in programHeaders where seg.type == .load {
            let pageOffset = seg.offset.rawValue & ~UInt64(0xfff)
            if mappingOffset.rawValue >= pageOffset && mappingOffset.rawValue < seg.offset.rawValue &+ max(seg.fileSize, 1),
               best == nil || seg.offset.rawValue > best!.offset.rawValue {
                best = seg
            }
        }
        if let seg = best {
            let svma = seg.virtualAddress.rawValue &- (seg.offset.rawValue &- mappingOffset.rawValue)
            return mappingStart.rawValue &- svma
        }
        return nil
    }
}
