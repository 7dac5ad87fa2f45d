// libFuzzer entry point for the CFI reader: compiled into module SprofUnwind
// together with Sources/Unwind/DWARF by bench/fuzz-cfi.sh (see there).
//
// Input layout (so one input reaches every reader):
//   byte 0:        selector — bit 0: .eh_frame (0) or .debug_frame (1);
//                  bit 1: also read bytes 1... as an .eh_frame_hdr
//   bytes 1...:    the section bytes, at stated address 0x10000
// Every FDE's rows are computed and every rule evaluated with made-up
// registers and memory; everything must end in a value or a CFIError.
import SprofBase

@_cdecl("LLVMFuzzerTestOneInput")
public func cfiFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    guard size >= 1 else { return 0 }
    let selector = data[0]
    let bytes = UnsafeRawBufferPointer(start: data + 1, count: size - 1)
    let kind: CallFrameSection.Kind = selector & 1 == 0 ? .ehFrame : .debugFrame
    guard let section = try? CallFrameSection(kind: kind, bytes: bytes, address: StatedAddress(0x10000)) else { return 0 }
    let context = CFIContext()
    let readRegister: (DWARFRegister) -> UInt64? = { r in r.rawValue % 7 == 6 ? nil : UInt64(r.rawValue) &* 0x1000_0008 }
    let readMemory: (ProcessAddress, Int) -> UInt64? = { a, _ in a.rawValue % 5 == 0 ? nil : a.rawValue &* 0x2545_f491 }
    var it = section.entries()
    var count = 0
    while !it.isFinished && count < 10_000 {
        count += 1
        do throws(CFIError) {
            guard let entry = try it.next() else { break }
            guard case .fde(let fde) = entry else { continue }
            try section.forEachRow(of: fde, context: context) { row in
                guard let cfa = try? section.cfa(of: row, readRegister: readRegister, readMemory: readMemory) else { return }
                for e in row.registers {
                    _ = try? section.recover(e.register, rule: e.rule, cfa: cfa, readRegister: readRegister,
                                             readMemory: readMemory)
                }
            }
            let mid = StatedAddress(fde.initialLocation.rawValue &+ fde.addressRange / 2)
            if fde.contains(mid) { _ = try section.row(for: mid, in: fde, context: context) }
        } catch {
            _ = error.description
        }
    }
    if selector & 2 != 0, let hdr = try? EHFrameHeader(bytes: bytes, address: StatedAddress(0x10000)) {
        for i in 0..<min(hdr.fdeCount, 64) {
            if let e = try? hdr.entry(at: i) { _ = try? hdr.fde(for: e.initialLocation, in: section) }
        }
    }
    // The bytes as a DWARF expression too.
    let expression = DWARFExpression(bytes: bytes)
    _ = try? expression.evaluate(initialValue: 0x7fff_0000, cfa: 0x7fff_0000, readRegister: readRegister,
                                 readMemory: readMemory)
    return 0
}
