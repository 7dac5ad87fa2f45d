/// Whether the bytes just before a return address end a call instruction
/// (Intel SDM vol. 2A, "CALL—Call Procedure"): `E8 cd` (call rel32, 5 bytes)
/// or `FF /2` (call r/m64, 2 to 7 bytes, optionally after a REX prefix).
/// Used to accept a return address found by scanning or by a frame-pointer
/// step, where no CFI vouches for it.
enum CallDetectionX86_64 {
    /// `code` ends at the candidate return address (the bytes before it).
    static func endsWithCall(_ code: UnsafeRawBufferPointer) -> Bool {
        let n = code.count
        if n >= 5 && code[n - 5] == 0xE8 { return true }
        for length in 2...7 where n >= length {
            if indirectCall(code, at: n - length, length: length) { return true }
            // REX prefix (0x40-0x4F) before FF /2
            if length >= 3 && n >= length, (0x40...0x4F).contains(code[n - length]),
               indirectCall(code, at: n - length + 1, length: length - 1) { return true }
        }
        return false
    }

    /// `FF /2` with a ModRM (and SIB, displacement) exactly `length` bytes long.
    private static func indirectCall(_ code: UnsafeRawBufferPointer, at i: Int, length: Int) -> Bool {
        guard i >= 0, i + 1 < code.count, code[i] == 0xFF else { return false }
        let modrm = code[i + 1]
        let mod = modrm >> 6, reg = (modrm >> 3) & 7, rm = modrm & 7
        guard reg == 2 else { return false }
        var size = 2
        if mod != 3 && rm == 4 {
            guard i + 2 < code.count else { return false }
            size += 1  // SIB
            let base = code[i + 2] & 7
            if mod == 0 && base == 5 { size += 4 }
        }
        switch mod {
        case 0: if rm == 5 { size += 4 }  // rip-relative disp32
        case 1: size += 1
        case 2: size += 4
        default: break
        }
        return size == length
    }
}
