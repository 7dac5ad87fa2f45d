import SprofBase
import SprofELF
@testable import SprofUnwind
import XCTest

/// The CFI reader on byte-built sections: LEB128 and every pointer
/// encoding, CIE/FDE headers and augmentations, each `DW_CFA_*`
/// instruction, and corrupt input (which must give a `CFIError`, never a
/// trap or a hang). Real sections are in CFIRealSectionTests, DWARF
/// expressions in CFIExpressionTests.
final class CFITests: XCTestCase {
    typealias X = DWARFRegister.X86_64

    // MARK: - LEB128 (DWARF 5 §7.6, tables 7.5 and 7.6)

    func testULEB128SpecExamples() throws {
        let cases: [(UInt64, [UInt8])] = [
            (2, [0x02]), (127, [0x7f]), (128, [0x80, 0x01]), (129, [0x81, 0x01]), (130, [0x82, 0x01]),
            (12857, [0xb9, 0x64]), (0, [0x80, 0x80, 0x00]),  // redundant padding
            (UInt64.max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
        ]
        for (value, bytes) in cases {
            try withReader(bytes) { r in
                XCTAssertEqual(try r.uleb128(), value, "\(bytes)")
                XCTAssertTrue(r.isAtEnd)
            }
        }
    }

    func testSLEB128SpecExamples() throws {
        let cases: [(Int64, [UInt8])] = [
            (2, [0x02]), (-2, [0x7e]), (127, [0xff, 0x00]), (-127, [0x81, 0x7f]), (128, [0x80, 0x01]),
            (-128, [0x80, 0x7f]), (129, [0x81, 0x01]), (-129, [0xff, 0x7e]),
            (Int64.min, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x7f]),
            (Int64.max, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]),
            (-1, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),  // sign padding
        ]
        for (value, bytes) in cases {
            try withReader(bytes) { r in
                XCTAssertEqual(try r.sleb128(), value, "\(bytes)")
                XCTAssertTrue(r.isAtEnd)
            }
        }
    }

    func testLEB128RoundTripsAndErrors() throws {
        var rng = CFIRandom(seed: 7)
        for _ in 0..<2000 {
            let u = rng.next() >> (rng.next() % 64)
            try withReader(Self.uleb(u)) { r in XCTAssertEqual(try r.uleb128(), u) }
            let s = Int64(bitPattern: rng.next()) >> Int64(rng.next() % 64)
            try withReader(Self.sleb(s)) { r in XCTAssertEqual(try r.sleb128(), s) }
        }
        // Bits beyond 64, and numbers cut short.
        try withReader([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]) { r in
            XCTAssertThrowsError(try r.uleb128()) { XCTAssertEqual($0 as? CFIError, .leb128Overflow(section: .expression, offset: 0)) }
        }
        try withReader([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]) { r in
            XCTAssertThrowsError(try r.uleb128())
        }
        try withReader([0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x3f]) { r in
            XCTAssertThrowsError(try r.sleb128())
        }
        for bytes in [[UInt8](), [0x80], [0xff, 0xff]] {
            try withReader(bytes) { r in
                XCTAssertThrowsError(try r.uleb128()) { e in
                    guard case .truncated? = e as? CFIError else { return XCTFail("\(e)") }
                }
                XCTAssertThrowsError(try r.sleb128())
            }
        }
        // Thousands of continuation bytes end at the buffer, no hang.
        try withReader([UInt8](repeating: 0x80, count: 100_000)) { r in XCTAssertThrowsError(try r.uleb128()) }
    }

    // MARK: - Pointer encodings (LSB §10.5.1)

    func testEveryPointerEncodingRoundTrips() throws {
        let formats: [PointerEncoding.Format] = [.absolute, .uleb128, .udata2, .udata4, .udata8, .signed, .sleb128,
                                                 .sdata2, .sdata4, .sdata8]
        let applications: [PointerEncoding.Application] = [.absolute, .pcRelative, .textRelative, .dataRelative,
                                                           .functionRelative, .aligned]
        let sectionAddress: UInt64 = 0x40_0003  // odd, so `aligned` needs padding
        let bases = PointerBases(text: StatedAddress(0x1000), data: StatedAddress(0x20_0000),
                                 function: StatedAddress(0x3000))
        for format in formats {
            for application in applications {
                for indirect in [false, true] {
                    let enc = PointerEncoding(format, application, indirect: indirect)
                    XCTAssertTrue(enc.isValid)
                    for fieldOffset in [0, 1, 5] {
                        // A target the format can reach from the base.
                        for target in try reachableTargets(format, application, sectionAddress + UInt64(fieldOffset), bases) {
                            var bytes = [UInt8](repeating: 0xee, count: fieldOffset)
                            bytes += try Self.encode(target, enc, fieldAddress: sectionAddress + UInt64(fieldOffset), bases: bases)
                            bytes += [0x99]  // a byte after, must not be read
                            try withReader(bytes, address: sectionAddress) { r in
                                r.offset = fieldOffset
                                let p = try r.encodedPointer(enc, bases: bases)
                                let want: EncodedPointer = indirect ? .indirect(StatedAddress(target)) : .direct(StatedAddress(target))
                                XCTAssertEqual(p, want, "encoding \(enc) at +\(fieldOffset) target \(cfiHex(target))")
                                XCTAssertEqual(r.offset, bytes.count - 1, "encoding \(enc) consumed the whole value")
                            }
                        }
                    }
                }
            }
        }
    }

    func testPointerEncodingErrors() throws {
        let bytes: [UInt8] = [1, 2, 3, 4, 5, 6, 7, 8, 9]
        try withReader(bytes) { r in
            for bad: UInt8 in [0x05, 0x06, 0x07, 0x0d, 0x0e, 0x0f, 0x60, 0x70] {
                r.offset = 0
                XCTAssertFalse(PointerEncoding(rawValue: bad).isValid)
                XCTAssertThrowsError(try r.encodedPointer(PointerEncoding(rawValue: bad), bases: PointerBases())) {
                    XCTAssertEqual($0 as? CFIError, .badPointerEncoding(section: .expression, offset: 0, encoding: bad))
                }
            }
            r.offset = 0
            XCTAssertThrowsError(try r.encodedPointer(.omit, bases: PointerBases()))
            for app: PointerEncoding.Application in [.textRelative, .dataRelative, .functionRelative] {
                r.offset = 0
                let e = PointerEncoding(.udata4, app)
                XCTAssertThrowsError(try r.encodedPointer(e, bases: PointerBases())) {
                    XCTAssertEqual($0 as? CFIError, .missingPointerBase(section: .expression, offset: 0, encoding: e.rawValue))
                }
            }
            r.offset = 4
            XCTAssertThrowsError(try r.encodedPointer(PointerEncoding(.udata8), bases: PointerBases())) {
                XCTAssertEqual($0 as? CFIError, .truncated(section: .expression, offset: 4, needed: 8, limit: 9))
            }
        }
    }

    // MARK: - CIE and FDE headers

    func testEHFrameCIEAndFDEFields() throws {
        var b = CFIBuilder(kind: .ehFrame, address: 0x2000)
        // zPLRS: personality indirect|pcrel|sdata4, LSDA pcrel|sdata4, FDEs pcrel|sdata4.
        let cie = b.cie(augmentation: "zPLRS", caf: 1, daf: -8, ra: 16,
                        personality: (PointerEncoding(rawValue: 0x9b), 0x7000),
                        lsdaEncoding: PointerEncoding(rawValue: 0x1b), fdeEncoding: PointerEncoding(rawValue: 0x1b),
                        instructions: [0x0c, 0x07, 0x08, 0x90, 0x01])  // def_cfa rsp+8; offset rip, cfa-8
        let fde = b.fde(cie: cie, start: 0x1234, length: 0x56, lsda: 0x9000, instructions: [0x41, 0x0e, 0x10])
        b.terminator()
        try b.withSection { s in
            let c = try s.cie(at: cie)
            XCTAssertEqual(c.version, 1)
            XCTAssertEqual(c.codeAlignmentFactor, 1)
            XCTAssertEqual(c.dataAlignmentFactor, -8)
            XCTAssertEqual(c.returnAddressRegister, X.returnAddress)
            XCTAssertTrue(c.augmentation.hasAugmentationData)
            XCTAssertTrue(c.augmentation.isSignalFrame)
            XCTAssertEqual(c.augmentation.personality, .indirect(StatedAddress(0x7000)))
            XCTAssertEqual(c.augmentation.lsdaEncoding.rawValue, 0x1b)
            XCTAssertEqual(c.augmentation.fdeEncoding.rawValue, 0x1b)
            XCTAssertFalse(c.is64Bit)
            let f = try s.fde(at: fde)
            XCTAssertEqual(f.cie, c)
            XCTAssertEqual(f.initialLocation, StatedAddress(0x1234))
            XCTAssertEqual(f.addressRange, 0x56)
            XCTAssertEqual(f.endAddress, StatedAddress(0x128a))
            XCTAssertEqual(f.lsda, .direct(StatedAddress(0x9000)))
            XCTAssertTrue(f.contains(StatedAddress(0x1234)) && f.contains(StatedAddress(0x1289)))
            XCTAssertFalse(f.contains(StatedAddress(0x1233)) || f.contains(StatedAddress(0x128a)))
            XCTAssertEqual(try s.allFDEs(), [f])
            var it = s.entries()
            XCTAssertEqual(try it.next(), .cie(c))
            XCTAssertEqual(try it.next(), .fde(f))
            XCTAssertNil(try it.next())
            XCTAssertTrue(it.isFinished)
            // Asking for the wrong kind of entry.
            XCTAssertThrowsError(try s.fde(at: cie)) {
                XCTAssertEqual($0 as? CFIError, .wrongEntryKind(section: .ehFrame, offset: cie, expectedCIE: false))
            }
            XCTAssertThrowsError(try s.cie(at: fde)) {
                XCTAssertEqual($0 as? CFIError, .wrongEntryKind(section: .ehFrame, offset: fde, expectedCIE: true))
            }
        }
    }

    func testAugmentations() throws {
        // "" (no augmentation; FDE addresses absolute 8 bytes).
        var b = CFIBuilder(kind: .ehFrame, address: 0)
        var cie = b.cie(augmentation: "", instructions: Self.standardCIE)
        var fde = b.fde(cie: cie, start: 0x4000, length: 0x10, instructions: [])
        try b.withSection { s in
            let f = try s.fde(at: fde)
            XCTAssertFalse(f.cie.augmentation.hasAugmentationData)
            XCTAssertEqual(f.cie.augmentation.fdeEncoding, .absolute)
            XCTAssertEqual(f.initialLocation, StatedAddress(0x4000))
            XCTAssertNil(f.lsda)
        }
        // "eh": GCC 2.x's eh_ptr (an address) after the string.
        b = CFIBuilder(kind: .ehFrame, address: 0)
        cie = b.cie(augmentation: "eh", ehData: 0x1122_3344_5566_7788, instructions: Self.standardCIE)
        fde = b.fde(cie: cie, start: 0x4000, length: 0x10, instructions: [])
        try b.withSection { s in
            let f = try s.fde(at: fde)
            XCTAssertTrue(f.cie.augmentation.hasEHData)
            XCTAssertEqual(f.cie.dataAlignmentFactor, -8)
            XCTAssertEqual(try s.rows(of: f).first?.cfa, .registerOffset(X.rsp, 8))
        }
        // "zR" with a udata4 absolute encoding, "zL" with an omitted LSDA.
        b = CFIBuilder(kind: .ehFrame, address: 0x100)
        cie = b.cie(augmentation: "zRL", lsdaEncoding: .omit, fdeEncoding: PointerEncoding(.udata4),
                    instructions: Self.standardCIE)
        fde = b.fde(cie: cie, start: 0x4000, length: 0x10, instructions: [])
        try b.withSection { s in
            let f = try s.fde(at: fde)
            XCTAssertEqual(f.initialLocation, StatedAddress(0x4000))
            XCTAssertNil(f.lsda)
        }
        // A personality and an LSDA relative to bases not given (textrel,
        // datarel): skipped as nil; the FDE is still read.
        b = CFIBuilder(kind: .ehFrame, address: 0x100)
        cie = b.cie(augmentation: "zPLR", personality: (PointerEncoding(.udata4, .textRelative), 0),
                    lsdaEncoding: PointerEncoding(.sdata4, .dataRelative), fdeEncoding: PointerEncoding(.udata4),
                    instructions: Self.standardCIE)
        fde = b.fde(cie: cie, start: 0x4000, length: 0x10, augmentationData: [1, 2, 3, 4], instructions: [])
        try b.withSection { s in
            let f = try s.fde(at: fde)
            XCTAssertNil(f.cie.augmentation.personality)
            XCTAssertNil(f.lsda)
            XCTAssertEqual(f.initialLocation, StatedAddress(0x4000))
            XCTAssertEqual(try s.rows(of: f).first?.cfa, .registerOffset(X.rsp, 8))
        }
        // AArch64's "B" and "G" are known; "zX" and "Q" are not.
        b = CFIBuilder(kind: .ehFrame, address: 0)
        cie = b.cie(augmentation: "zRBG", fdeEncoding: PointerEncoding(.udata8), instructions: [])
        try b.withSection { s in
            let c = try s.cie(at: cie)
            XCTAssertTrue(c.augmentation.usesBKey && c.augmentation.isMTETagged)
        }
        for aug in ["zX", "Q", "ehz"] {
            b = CFIBuilder(kind: .ehFrame, address: 0)
            cie = b.cie(augmentation: aug, instructions: [])
            try b.withSection { s in
                XCTAssertThrowsError(try s.cie(at: cie), aug) { e in
                    guard case .unknownAugmentation? = e as? CFIError else { return XCTFail("\(e)") }
                }
            }
        }
        // "z" data longer than its letters need: the rest is skipped.
        b = CFIBuilder(kind: .ehFrame, address: 0)
        cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(.udata8), extraAugmentationData: [1, 2, 3],
                    instructions: Self.standardCIE)
        fde = b.fde(cie: cie, start: 0x10, length: 4, augmentationData: [9, 9], instructions: [])
        try b.withSection { s in
            let f = try s.fde(at: fde)
            XCTAssertEqual(try s.rows(of: f).map(\.cfa), [.registerOffset(X.rsp, 8)])
            XCTAssertTrue(s.bytes[f.instructions].allSatisfy { $0 == 0 }, "only the DW_CFA_nop padding")
        }
    }

    func testVersionsAndDebugFrameFormats() throws {
        // .eh_frame version 3: the return address register is a ULEB128.
        var b = CFIBuilder(kind: .ehFrame, address: 0)
        var cie = b.cie(version: 3, augmentation: "zR", ra: 300, fdeEncoding: PointerEncoding(.udata8), instructions: [])
        try b.withSection { s in XCTAssertEqual(try s.cie(at: cie).returnAddressRegister, DWARFRegister(300)) }
        // Version 4 is .debug_frame-only; 2 is nothing.
        for v: UInt8 in [0, 2, 4, 5] {
            b = CFIBuilder(kind: .ehFrame, address: 0)
            cie = b.cie(version: v, augmentation: "", instructions: [])
            try b.withSection { s in
                XCTAssertThrowsError(try s.cie(at: cie)) { e in
                    guard case .unsupportedVersion(.ehFrame, _, v)? = e as? CFIError else { return XCTFail("\(e)") }
                }
            }
        }
        // .debug_frame: versions 1, 3, 4, in 32- and 64-bit DWARF.
        for is64 in [false, true] {
            for version: UInt8 in [1, 3, 4] {
                var d = CFIBuilder(kind: .debugFrame, address: 0, is64Bit: is64)
                let c = d.cie(version: version, augmentation: "", caf: 4, daf: -4, ra: 30,
                              addressSize: 4, segmentSize: version == 4 ? 2 : 0,
                              instructions: [0x0c, 0x1f, 0x00])  // def_cfa r31+0
                let f = d.fde(cie: c, start: 0x8000, length: 0x40, segment: version == 4 ? 2 : 0,
                              addressSize: version == 4 ? 4 : 8,
                              instructions: [0x42, 0x0e, 0x10])  // advance 2*4; def_cfa_offset 16
                try d.withSection { s in
                    let fde = try s.fde(at: f)
                    XCTAssertEqual(fde.cie.version, version)
                    XCTAssertEqual(fde.cie.is64Bit, is64)
                    XCTAssertEqual(fde.cie.addressSize, version == 4 ? 4 : 8)
                    XCTAssertEqual(fde.cie.segmentSelectorSize, version == 4 ? 2 : 0)
                    XCTAssertEqual(fde.initialLocation, StatedAddress(0x8000))
                    XCTAssertEqual(fde.endAddress, StatedAddress(0x8040))
                    let rows = try s.rows(of: fde)
                    XCTAssertEqual(rows.map(\.start), [StatedAddress(0x8000), StatedAddress(0x8008)])
                    XCTAssertEqual(rows.map(\.cfa), [.registerOffset(DWARFRegister(31), 0), .registerOffset(DWARFRegister(31), 16)])
                    XCTAssertEqual(try s.allFDEs().count, 1)
                }
            }
        }
        // v4 address sizes that cannot be.
        var d = CFIBuilder(kind: .debugFrame, address: 0)
        let c = d.cie(version: 4, augmentation: "", addressSize: 3, instructions: [])
        try d.withSection { s in
            XCTAssertThrowsError(try s.cie(at: c)) { e in
                guard case .badAddressSize? = e as? CFIError else { return XCTFail("\(e)") }
            }
        }
    }

    func testEHFrame64BitLengthAndTerminator() throws {
        var b = CFIBuilder(kind: .ehFrame, address: 0x1000, is64Bit: true)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: Self.standardCIE)
        let f1 = b.fde(cie: cie, start: 0x500, length: 0x20, instructions: [])
        b.terminator()
        // Anything after the terminator is not read.
        _ = b.fde(cie: cie, start: 0x900, length: 0x20, instructions: [])
        try b.withSection { s in
            let fdes = try s.allFDEs()
            XCTAssertEqual(fdes.map(\.offset), [f1])
            XCTAssertTrue(fdes[0].cie.is64Bit)
            XCTAssertEqual(fdes[0].initialLocation, StatedAddress(0x500))
        }
        // .debug_frame: a zero length is skipped, not an end.
        var d = CFIBuilder(kind: .debugFrame, address: 0)
        let c = d.cie(augmentation: "", instructions: Self.standardCIE)
        d.terminator()
        let f = d.fde(cie: c, start: 0x900, length: 0x20, instructions: [])
        try d.withSection { s in XCTAssertEqual(try s.allFDEs().map(\.offset), [f]) }
    }

    func testFDEIteratorCarriesOnAfterACorruptEntry() throws {
        var b = CFIBuilder(kind: .ehFrame, address: 0)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(.udata8), instructions: Self.standardCIE)
        let good1 = b.fde(cie: cie, start: 0x100, length: 0x10, instructions: [])
        let bad = b.fde(cie: cie, start: 0x200, length: 0x10, instructions: [])
        let good2 = b.fde(cie: cie, start: 0x300, length: 0x10, instructions: [])
        // Point the middle FDE's CIE pointer at itself.
        b.patchU32(at: bad + 4, 4)
        try b.withSection { s in
            var it = s.fdes()
            XCTAssertEqual(try it.next()?.offset, good1)
            XCTAssertThrowsError(try it.next()) {
                XCTAssertEqual($0 as? CFIError, .badCIEPointer(section: .ehFrame, offset: bad, pointer: UInt64(bad)))
            }
            XCTAssertFalse(it.isFinished)
            XCTAssertEqual(try it.next()?.offset, good2)
            XCTAssertNil(try it.next())
            XCTAssertEqual(try s.fdeByScanning(for: StatedAddress(0x305))?.offset, good2)
            XCTAssertNil(try s.fdeByScanning(for: StatedAddress(0x250)))
        }
        // An entry too short to hold its CIE id: skipped, like any entry with a sound length.
        var c = CFIBuilder(kind: .ehFrame, address: 0)
        let cie2 = c.cie(augmentation: "zR", fdeEncoding: PointerEncoding(.udata8), instructions: Self.standardCIE)
        let short = c.bytes.count
        c.bytes += [2, 0, 0, 0, 0xaa, 0xbb]
        let after = c.fde(cie: cie2, start: 0x400, length: 0x10, instructions: [])
        try c.withSection { s in
            var it = s.fdes()
            XCTAssertThrowsError(try it.next()) {
                XCTAssertEqual($0 as? CFIError, .truncated(section: .ehFrame, offset: short + 4, needed: 4, limit: short + 6))
            }
            XCTAssertEqual(try it.next()?.offset, after)
            XCTAssertNil(try it.next())
        }
    }

    // MARK: - Corrupt sections

    func testHeaderErrors() throws {
        var b = CFIBuilder(kind: .ehFrame, address: 0)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(.udata8), instructions: Self.standardCIE)
        let fde = b.fde(cie: cie, start: 0x100, length: 0x10, instructions: [])
        let size = b.bytes.count
        func expect(_ patch: (inout CFIBuilder) -> Void, _ check: (CFIError) -> Void, line: UInt = #line) throws {
            var c = b
            patch(&c)
            try c.withSection { s in
                var it = s.fdes()
                var errors: [CFIError] = []
                while !it.isFinished {
                    do throws(CFIError) { _ = try it.next() } catch { errors.append(error) }
                }
                XCTAssertEqual(errors.count, 1, "\(errors)", line: line)
                if let e = errors.first { check(e) }
            }
        }
        // Reserved initial lengths.
        try expect({ $0.patchU32(at: fde, 0xffff_fff0) }) {
            XCTAssertEqual($0, .reservedLength(section: .ehFrame, offset: fde, value: 0xffff_fff0))
        }
        // Lengths past the end, 32- and 64-bit, including 2^64-1.
        try expect({ $0.patchU32(at: fde, UInt32(size)) }) {
            XCTAssertEqual($0, .lengthOutOfBounds(section: .ehFrame, offset: fde, length: UInt64(size), size: size))
        }
        try expect({ $0.patchU32(at: fde, 0xffff_ffff) }) { e in
            guard case .lengthOutOfBounds(.ehFrame, fde, _, size) = e else { return XCTFail("\(e)") }
        }
        // A CIE pointer before the section start, or not at a CIE.
        try expect({ $0.patchU32(at: fde + 4, 0x7fff_0000) }) {
            XCTAssertEqual($0, .badCIEPointer(section: .ehFrame, offset: fde, pointer: 0x7fff_0000))
        }
        try expect({ $0.patchU32(at: fde + 4, UInt32(fde + 4 - 2)) }) {
            XCTAssertEqual($0, .badCIEPointer(section: .ehFrame, offset: fde, pointer: 2))
        }
        // Overlapping: the CIE's length swallows the FDE (the FDE is never seen).
        try b.withSection { s in XCTAssertEqual(try s.allFDEs().count, 1) }
        var overlap = b
        overlap.patchU32(at: cie, UInt32(size - 4))
        try overlap.withSection { s in XCTAssertEqual(try s.allFDEs().count, 0) }
        // Offsets outside the section.
        try b.withSection { s in
            XCTAssertThrowsError(try s.fde(at: size)) {
                XCTAssertEqual($0 as? CFIError, .offsetOutOfBounds(section: .ehFrame, offset: size, size: size))
            }
            XCTAssertThrowsError(try s.fde(at: -1))
        }
        // An FDE whose range wraps around the address space.
        var wrap = CFIBuilder(kind: .ehFrame, address: 0)
        let c = wrap.cie(augmentation: "zR", fdeEncoding: PointerEncoding(.udata8), instructions: [])
        let f = wrap.fde(cie: c, start: UInt64.max - 4, length: 8, instructions: [])
        try wrap.withSection { s in
            XCTAssertThrowsError(try s.fde(at: f)) {
                XCTAssertEqual($0 as? CFIError, .addressOverflow(section: .ehFrame, offset: f + 8))
            }
        }
    }

    /// Every prefix of a section, and every length field set to every value
    /// around the real one: each must parse or throw, never trap.
    func testTruncatedAtEveryLengthAndEveryLengthValue() throws {
        var b = CFIBuilder(kind: .ehFrame, address: 0x3000)
        let cie = b.cie(augmentation: "zPLR", personality: (PointerEncoding(rawValue: 0x9b), 0x8000),
                        lsdaEncoding: PointerEncoding(rawValue: 0x1b), fdeEncoding: PointerEncoding(rawValue: 0x1b),
                        instructions: Self.standardCIE)
        var entryOffsets = [cie]
        entryOffsets.append(b.fde(cie: cie, start: 0x100, length: 0x40, lsda: 0x9000,
                                  instructions: [0x41, 0x0e, 0x10, 0x86, 0x02, 0x0a, 0x41, 0x0e, 0x08, 0x0b,
                                                 0x0f, 0x03, 0x77, 0x08, 0x06, 0x2e, 0x10]))
        let cie2 = b.cie(augmentation: "", instructions: Self.standardCIE)
        entryOffsets.append(cie2)
        entryOffsets.append(b.fde(cie: cie2, start: 0x200, length: 0x40, instructions: [0x02, 0x05, 0x10, 0x03, 0x02, 0x08]))
        b.terminator()
        let full = b.bytes
        var outcomes = (ok: 0, failed: 0)
        func exercise(_ bytes: [UInt8]) throws {
            var c = b
            c.bytes = bytes
            try c.withSection { s in
                let ctx = CFIContext()
                var it = s.entries()
                while !it.isFinished {
                    do throws(CFIError) {
                        guard let e = try it.next() else { break }
                        if case .fde(let f) = e {
                            _ = try s.rows(of: f, context: ctx)
                            _ = try s.row(for: f.initialLocation, in: f, context: ctx)
                        }
                        outcomes.ok += 1
                    } catch {
                        outcomes.failed += 1
                        _ = error.description
                    }
                }
            }
        }
        for n in 0...full.count { try exercise(Array(full.prefix(n))) }
        for entry in entryOffsets {
            let real = full.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: entry, as: UInt32.self) }
            var values: [UInt32] = Array(0...real + 8) + [0xffff_fff0, 0xffff_fffe, 0xffff_ffff, 0x7fff_ffff, UInt32(full.count)]
            values += (0..<32).map { 1 << $0 }
            for v in values {
                var bytes = full
                withUnsafeBytes(of: v.littleEndian) { bytes.replaceSubrange(entry..<entry + 4, with: $0) }
                try exercise(bytes)
                // The 64-bit escape with every following 8-byte length.
                if v == 0xffff_ffff {
                    for l: UInt64 in [0, 4, UInt64(full.count), UInt64.max, UInt64(Int.max), 1 << 40] {
                        var bytes64 = full
                        withUnsafeBytes(of: l.littleEndian) { bytes64.replaceSubrange(entry + 4..<entry + 12, with: $0) }
                        withUnsafeBytes(of: v.littleEndian) { bytes64.replaceSubrange(entry..<entry + 4, with: $0) }
                        try exercise(bytes64)
                    }
                }
            }
        }
        XCTAssertGreaterThan(outcomes.ok, 0)
        XCTAssertGreaterThan(outcomes.failed, 0)
    }

    // MARK: - CFA instructions (DWARF 5 §6.4.2)

    /// `DW_CFA_def_cfa: r7 (rsp) ofs 8; DW_CFA_offset: r16 (rip) at cfa-8`,
    /// the CIE program GCC writes for x86_64.
    static let standardCIE: [UInt8] = [0x0c, 0x07, 0x08, 0x90, 0x01]

    /// The rows of a one-FDE `.eh_frame` with `program`, starting at 0x1000
    /// and `length` bytes long.
    func rows(_ program: [UInt8], cie cieProgram: [UInt8] = CFITests.standardCIE, caf: UInt64 = 1, daf: Int64 = -8,
              length: UInt64 = 0x100, context: CFIContext = CFIContext(), pads: Bool = true) throws -> [CFIRow] {
        var b = CFIBuilder(kind: .ehFrame, address: 0x10_0000)
        b.pads = pads
        let cie = b.cie(augmentation: "zR", caf: caf, daf: daf, fdeEncoding: PointerEncoding(rawValue: 0x1b),
                        instructions: cieProgram)
        let f = b.fde(cie: cie, start: 0x1000, length: length, instructions: program)
        return try b.withSection { s in
            let fde = try s.fde(at: f)
            let rows = try s.rows(of: fde, context: context)
            // Rows cover the FDE without gaps, and row(for:) agrees with them everywhere.
            XCTAssertEqual(rows.first?.start, fde.initialLocation)
            XCTAssertEqual(rows.last?.end, fde.endAddress)
            for (a, b) in zip(rows, rows.dropFirst()) { XCTAssertEqual(a.end, b.start) }
            for row in rows {
                for a in Set([row.start.rawValue, row.end.rawValue - 1, (row.start.rawValue + row.end.rawValue) / 2]) {
                    XCTAssertEqual(try s.row(for: StatedAddress(a), in: fde, context: context), row)
                }
            }
            XCTAssertThrowsError(try s.row(for: fde.endAddress, in: fde, context: context))
            return rows
        }
    }

    func rowsError(_ program: [UInt8], cie: [UInt8] = CFITests.standardCIE,
                   context: CFIContext = CFIContext()) -> CFIError? {
        do {
            _ = try rows(program, cie: cie, context: context, pads: false)
            return nil
        } catch {
            return error as? CFIError
        }
    }

    func testAdvanceLocations() throws {
        // advance_loc 4, advance_loc1 0x10, advance_loc2 0x100, advance_loc4 0x10000 with caf 1 ...
        var r = try rows([0x44, 0x0e, 0x10, 0x02, 0x10, 0x0e, 0x18, 0x03, 0x00, 0x01, 0x0e, 0x20,
                          0x04, 0x00, 0x00, 0x01, 0x00, 0x0e, 0x28], length: 0x2_0000)
        XCTAssertEqual(r.map(\.start.rawValue), [0x1000, 0x1004, 0x1014, 0x1114, 0x11114])
        XCTAssertEqual(r.map(\.end.rawValue), [0x1004, 0x1014, 0x1114, 0x11114, 0x21000])
        XCTAssertEqual(r.map(\.cfa), [8, 16, 24, 32, 40].map { .registerOffset(X.rsp, $0) })
        // ... and caf 4 (each delta × 4).
        r = try rows([0x41, 0x0e, 0x10, 0x02, 0x02, 0x0e, 0x18], caf: 4)
        XCTAssertEqual(r.map(\.start.rawValue), [0x1000, 0x1004, 0x100c])
        // A zero advance makes no empty row; the later rules win.
        r = try rows([0x40, 0x0e, 0x10, 0x41, 0x40, 0x0e, 0x18])
        XCTAssertEqual(r.map(\.start.rawValue), [0x1000, 0x1001])
        XCTAssertEqual(r.map(\.cfa), [.registerOffset(X.rsp, 16), .registerOffset(X.rsp, 24)])
        // Advancing past the end: rows are clipped to the FDE and the rest ignored.
        r = try rows([0x02, 0xff, 0x0e, 0x10, 0x41, 0x0e, 0x20], length: 0x10)
        XCTAssertEqual(r.count, 1)
        XCTAssertEqual(r[0].end.rawValue, 0x1010)
        // An advance that overflows the address (delta × caf, then + location).
        XCTAssertNil(rowsError([0x04, 0xff, 0xff, 0xff, 0xff]), "0x1000 + 2^32 - 1 fits")
        XCTAssertThrowsError(try rows([0x42], caf: UInt64.max / 2)) { e in
            guard case .addressOverflow? = e as? CFIError else { return XCTFail("\(e)") }
        }
    }

    func testSetLoc() throws {
        // DW_CFA_set_loc with the FDE's pcrel|sdata4 encoding: the field is at
        // a known section offset, so build the value with the builder.
        var b = CFIBuilder(kind: .ehFrame, address: 0x10_0000)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: Self.standardCIE)
        let f = b.fde(cie: cie, start: 0x1000, length: 0x100) { b, at in
            // set_loc 0x1020; def_cfa_offset 16; set_loc 0x1080; def_cfa_offset 24
            var p: [UInt8] = [0x01]
            p += try! CFITests.encode(0x1020, PointerEncoding(rawValue: 0x1b), fieldAddress: 0x10_0000 + UInt64(at + 1),
                                      bases: PointerBases())
            p += [0x0e, 0x10, 0x01]
            p += try! CFITests.encode(0x1080, PointerEncoding(rawValue: 0x1b),
                                      fieldAddress: 0x10_0000 + UInt64(at + p.count), bases: PointerBases())
            p += [0x0e, 0x18]
            return p
        }
        try b.withSection { s in
            let rows = try s.rows(of: try s.fde(at: f))
            XCTAssertEqual(rows.map(\.start.rawValue), [0x1000, 0x1020, 0x1080])
            XCTAssertEqual(rows.map(\.cfa), [8, 16, 24].map { .registerOffset(X.rsp, $0) })
        }
        // Backwards is an error; in .debug_frame the operand is a plain address.
        var d = CFIBuilder(kind: .debugFrame, address: 0)
        let c = d.cie(augmentation: "", instructions: Self.standardCIE)
        let fd = d.fde(cie: c, start: 0x1000, length: 0x100,
                       instructions: [0x01] + CFIBuilder.le(UInt64(0x1010)) + [0x0e, 0x10] + [0x01] + CFIBuilder.le(UInt64(0x1008)))
        try d.withSection { s in
            XCTAssertThrowsError(try s.rows(of: try s.fde(at: fd))) { e in
                guard case .locationBackwards(.debugFrame, _, StatedAddress(0x1010), StatedAddress(0x1008))? = e as? CFIError
                else { return XCTFail("\(e)") }
            }
        }
    }

    func testRegisterRuleInstructions() throws {
        let r = try rows([
            0x83, 0x02,              // DW_CFA_offset: r3 (rbx) at cfa-16
            0x05, 0x06, 0x03,        // DW_CFA_offset_extended: r6 (rbp) at cfa-24
            0x11, 0x0c, 0x7c,        // DW_CFA_offset_extended_sf: r12 at cfa+32 (-4 × -8)
            0x2f, 0x0d, 0x01,        // DW_CFA_GNU_negative_offset_extended: r13 at cfa+8
            0x07, 0x0e,              // DW_CFA_undefined: r14
            0x08, 0x0f,              // DW_CFA_same_value: r15
            0x09, 0x01, 0x02,        // DW_CFA_register: r1 (rdx) in r2 (rcx)
            0x14, 0x04, 0x02,        // DW_CFA_val_offset: r4 (rsi) = cfa-16
            0x15, 0x05, 0x7f,        // DW_CFA_val_offset_sf: r5 (rdi) = cfa+8
            0x10, 0x08, 0x02, 0x77, 0x10,  // DW_CFA_expression: r8 at [breg7 +16]
            0x16, 0x09, 0x01, 0x30,  // DW_CFA_val_expression: r9 = lit0
            0x00,                    // DW_CFA_nop
        ])
        XCTAssertEqual(r.count, 1)
        let row = r[0]
        XCTAssertEqual(row.rule(for: X.rbx), .offset(-16))
        XCTAssertEqual(row.rule(for: X.rbp), .offset(-24))
        XCTAssertEqual(row.rule(for: X.r12), .offset(32))
        XCTAssertEqual(row.rule(for: X.r13), .offset(8))
        XCTAssertEqual(row.rule(for: X.r14), .undefined)
        XCTAssertEqual(row.rule(for: X.r15), .sameValue)
        XCTAssertEqual(row.rule(for: X.rdx), .register(X.rcx))
        XCTAssertEqual(row.rule(for: X.rsi), .valOffset(-16))
        XCTAssertEqual(row.rule(for: X.rdi), .valOffset(8))
        XCTAssertEqual(row.rule(for: X.returnAddress), .offset(-8))
        XCTAssertNil(row.rule(for: X.rax), "no rule: unspecified")
        guard case .expression(let e)? = row.rule(for: X.r8), case .valExpression(let v)? = row.rule(for: X.r9) else {
            return XCTFail("\(row)")
        }
        XCTAssertEqual(e.length, 2)
        XCTAssertEqual(v.length, 1)
        XCTAssertEqual(row.registers.count, 12)
    }

    func testCFARuleInstructions() throws {
        let r = try rows([
            0x41, 0x0c, 0x06, 0x10,  // def_cfa: rbp+16
            0x41, 0x0d, 0x03,        // def_cfa_register: rbx (offset kept)
            0x41, 0x0e, 0x20,        // def_cfa_offset: 32
            0x41, 0x13, 0x7e,        // def_cfa_offset_sf: -2 × -8 = 16
            0x41, 0x12, 0x07, 0x7d,  // def_cfa_sf: rsp + (-3 × -8) = 24
            0x41, 0x0f, 0x02, 0x77, 0x08,  // def_cfa_expression: breg7 +8
        ])
        XCTAssertEqual(r.map(\.cfa).dropLast(), [.registerOffset(X.rsp, 8), .registerOffset(X.rbp, 16),
                                                 .registerOffset(X.rbx, 16), .registerOffset(X.rbx, 32),
                                                 .registerOffset(X.rbx, 16), .registerOffset(X.rsp, 24)])
        guard case .expression(let e) = r.last?.cfa else { return XCTFail() }
        XCTAssertEqual(e.length, 2)
        // def_cfa_register/def_cfa_offset need a register-based CFA.
        for op: [UInt8] in [[0x0d, 0x06], [0x0e, 0x10], [0x13, 0x02]] {
            XCTAssertEqual(rowsError([0x0f, 0x01, 0x30] + op).map { if case .cfaNotRegisterBased = $0 { true } else { false } }, true)
        }
        // No CFA rule in the CIE: rows say undefined; def_cfa_offset is an error.
        XCTAssertEqual(try rows([], cie: []).first?.cfa, .undefined)
        XCTAssertNotNil(rowsError([0x0e, 0x10], cie: []))
    }

    func testRestoreReturnsToTheCIERules() throws {
        let r = try rows([
            0x41, 0x83, 0x02,        // rbx at cfa-16
            0x90, 0x03,              // rip at cfa-24
            0x41, 0xc3,              // DW_CFA_restore: rbx (no CIE rule: unspecified again)
            0xd0,                    // DW_CFA_restore: rip (CIE: cfa-8)
            0x41, 0x86, 0x02,        // rbp at cfa-16
            0x41, 0x06, 0x06,        // DW_CFA_restore_extended: rbp
            0x06, 0x10,              // DW_CFA_restore_extended: rip
        ])
        XCTAssertEqual(r.map { $0.rule(for: X.rbx) }, [nil, .offset(-16), nil, nil, nil])
        XCTAssertEqual(r.map { $0.rule(for: X.returnAddress) }, [.offset(-8), .offset(-24), .offset(-8), .offset(-8), .offset(-8)])
        XCTAssertEqual(r.map { $0.rule(for: X.rbp) }, [nil, nil, nil, .offset(-16), nil])
    }

    func testRememberAndRestoreState() throws {
        // The shape of an epilogue in the middle of a function (libc's FDE at 0x6c).
        let r = try rows([
            0x41, 0x0e, 0x10, 0x83, 0x02,  // push rbx: cfa rsp+16, rbx at cfa-16
            0x46, 0x0e, 0x20,              // sub rsp: cfa rsp+32
            0x7d, 0x0a,                    // +61; remember_state
            0x0e, 0x10,                    //   cfa rsp+16
            0x41, 0x0e, 0x08, 0xc3,        //   +1: cfa rsp+8, restore rbx
            0x45, 0x0b,                    // +5; restore_state
        ], length: 0x63)
        XCTAssertEqual(r.map(\.start.rawValue), [0x1000, 0x1001, 0x1007, 0x1044, 0x1045, 0x104a])
        XCTAssertEqual(r.map(\.cfa), [8, 16, 32, 16, 8, 32].map { .registerOffset(X.rsp, $0) })
        XCTAssertEqual(r.map { $0.rule(for: X.rbx) }, [nil, .offset(-16), .offset(-16), .offset(-16), nil, .offset(-16)])
        // Nested to the limit, one deeper, and restoring with nothing remembered.
        let depth = CFIContext.maxStateDepth
        XCTAssertNoThrow(try rows([UInt8](repeating: 0x0a, count: depth) + [UInt8](repeating: 0x0b, count: depth)))
        XCTAssertEqual(rowsError([UInt8](repeating: 0x0a, count: depth + 1)).map {
            if case .stateStackOverflow(_, _, depth) = $0 { true } else { false } }, true)
        XCTAssertEqual(rowsError([0x0a, 0x0b, 0x0b]).map { if case .stateStackUnderflow = $0 { true } else { false } }, true)
        // The stack does not leak from one FDE into the next with a reused context.
        let ctx = CFIContext()
        _ = try rows([0x0a, 0x0a], context: ctx)
        XCTAssertNotNil(rowsError([0x0b], context: ctx))
    }

    func testArgsSizeIsRecorded() throws {
        let r = try rows([0x2e, 0x10, 0x44, 0x2e, 0x00, 0x44, 0x2e, 0x80, 0x01])
        XCTAssertEqual(r.map(\.argumentsSize), [16, 0, 128])
    }

    func testInstructionErrors() throws {
        func kind(_ e: CFIError?) -> String { e.map { "\($0)".components(separatedBy: ":").dropFirst().joined() } ?? "none" }
        // SPARC's window save (and unknown opcodes) are errors.
        for op: UInt8 in [0x2d, 0x17, 0x1c, 0x3f, 0x30] {
            guard case .unknownInstruction(_, _, op)? = rowsError([op]) else { return XCTFail("opcode \(op)") }
        }
        // Location changes and restores are not allowed in a CIE.
        for op: [UInt8] in [[0x41], [0x02, 0x01], [0xc3], [0x06, 0x03], [0x01, 0, 0, 0, 0]] {
            guard case .invalidInCIE? = rowsError([], cie: op) else { return XCTFail("\(op): \(kind(rowsError([], cie: op)))") }
        }
        // Register numbers beyond 16 bits, offsets beyond 63 bits.
        guard case .badRegister? = rowsError([0x07, 0x80, 0x80, 0x04]) else { return XCTFail() }
        guard case .offsetOverflow? = rowsError([0x0c, 0x07, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])
        else { return XCTFail() }
        guard case .offsetOverflow? = rowsError([0x11, 0x03, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x40])
        else { return XCTFail() }
        // Operands cut off by the end of the FDE.
        for op: [UInt8] in [[0x02], [0x03, 0x01], [0x04, 1, 2, 3], [0x05, 0x03], [0x0f, 0x05, 0x30], [0x10, 0x03],
                            [0x16, 0x03, 0x02, 0x30], [0x09, 0x01], [0x0c], [0x80]] {
            guard case .truncated? = rowsError(op) else { return XCTFail("\(op): \(kind(rowsError(op)))") }
        }
        // More registers than a row holds.
        var many: [UInt8] = []
        for reg in 0...RegisterRules.capacity { many += [0x05, UInt8(0x20 + reg), 0x01] }
        guard case .tooManyRegisterRules? = rowsError(many) else { return XCTFail(kind(rowsError(many))) }
        // The instruction bound.
        let ctx = CFIContext(maxInstructions: 10)
        guard case .instructionLimit(_, _, 10)? = rowsError([UInt8](repeating: 0, count: 11), context: ctx) else {
            return XCTFail()
        }
        XCTAssertNoThrow(try rows([UInt8](repeating: 0, count: 5), context: ctx))
    }

    func testContextReuseAllocatesNothing() throws {
        // Same results with one context for many FDEs as with a fresh one each.
        var b = CFIBuilder(kind: .ehFrame, address: 0x10_0000)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: Self.standardCIE)
        var offsets: [Int] = []
        for i in 0..<50 {
            offsets.append(b.fde(cie: cie, start: UInt64(0x1000 + 0x100 * i), length: 0x100,
                                 instructions: [0x41, 0x0e, UInt8(16 + i % 5 * 8), 0x0a, 0x42, 0x0e, 0x08, 0x41, 0x0b]))
        }
        try b.withSection { s in
            let ctx = CFIContext()
            for o in offsets {
                let f = try s.fde(at: o)
                XCTAssertEqual(try s.rows(of: f, context: ctx), try s.rows(of: f))
                XCTAssertEqual(try s.row(for: f.initialLocation.cfiAdvanced(0x2), in: f, context: ctx),
                               try s.row(for: f.initialLocation.cfiAdvanced(0x2), in: f))
            }
            let cie0 = try s.cie(at: cie)
            let initial = try s.initialRules(of: cie0)
            XCTAssertEqual(initial.cfa, .registerOffset(X.rsp, 8))
            XCTAssertEqual(initial.registers.rule(for: X.returnAddress), .offset(-8))
        }
    }

    // MARK: - .eh_frame_hdr (LSB §10.6.2)

    func testEHFrameHeaderLookup() throws {
        // An .eh_frame with FDEs at 0x1000, 0x1100, ..., with gaps, and a hdr table.
        var b = CFIBuilder(kind: .ehFrame, address: 0x20_0000)
        let cie = b.cie(augmentation: "zR", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: Self.standardCIE)
        var table: [(UInt64, Int)] = []
        for i in 0..<20 {
            let start = UInt64(0x1000 + 0x100 * i)
            table.append((start, b.fde(cie: cie, start: start, length: 0x80, instructions: [])))
        }
        b.terminator()
        let hdrAddress: UInt64 = 0x1f_0000
        var hdr: [UInt8] = [1, 0x1b, 0x03, 0x3b]  // version, eh_frame_ptr pcrel|sdata4, count udata4, table datarel|sdata4
        hdr += CFIBuilder.le(UInt32(truncatingIfNeeded: Int64(0x20_0000) - Int64(hdrAddress + 4)))
        hdr += CFIBuilder.le(UInt32(table.count))
        // Sorted by initial location (shuffled in the section would be the same table).
        for (start, offset) in table {
            hdr += CFIBuilder.le(UInt32(truncatingIfNeeded: Int64(start) - Int64(hdrAddress)))
            hdr += CFIBuilder.le(UInt32(truncatingIfNeeded: Int64(0x20_0000 + offset) - Int64(hdrAddress)))
        }
        try b.withSection { s in
            try CFIBytes(hdr).with { bytes in
                let h = try EHFrameHeader(bytes: bytes, address: StatedAddress(hdrAddress))
                XCTAssertEqual(h.version, 1)
                XCTAssertEqual(h.ehFrameAddress, StatedAddress(0x20_0000))
                XCTAssertEqual(h.fdeCount, 20)
                XCTAssertTrue(h.isSearchable)
                XCTAssertEqual(try h.entry(at: 3), EHFrameHeader.Entry(initialLocation: StatedAddress(0x1300),
                                                                       fdeAddress: StatedAddress(0x20_0000 + UInt64(table[3].1))))
                for a in stride(from: UInt64(0xf00), to: 0x2500, by: 0x11) {
                    let want = try s.fdeByScanning(for: StatedAddress(a))
                    XCTAssertEqual(try h.fde(for: StatedAddress(a), in: s), want, cfiHex(a))
                }
                XCTAssertNil(try h.lookup(StatedAddress(0xfff)))
                XCTAssertEqual(try h.lookup(StatedAddress(UInt64.max))?.initialLocation, StatedAddress(0x2300))
            }
            // A count larger than the table, a bad version, omitted table.
            var big = hdr
            big.replaceSubrange(8..<12, with: CFIBuilder.le(UInt32(21)))
            try CFIBytes(big).with { bytes in
                XCTAssertThrowsError(try EHFrameHeader(bytes: bytes, address: StatedAddress(hdrAddress))) {
                    XCTAssertEqual($0 as? CFIError, .tableTooLarge(section: .ehFrameHeader, offset: 12, count: 21))
                }
            }
            var v2 = hdr
            v2[0] = 2
            try CFIBytes(v2).with { bytes in
                XCTAssertThrowsError(try EHFrameHeader(bytes: bytes, address: StatedAddress(hdrAddress)))
            }
            var omitted = hdr
            omitted[3] = 0xff
            try CFIBytes(omitted).with { bytes in
                let h = try EHFrameHeader(bytes: bytes, address: StatedAddress(hdrAddress))
                XCTAssertFalse(h.isSearchable)
                XCTAssertNil(try h.lookup(StatedAddress(0x1000)))
            }
            for n in 0..<12 {
                try CFIBytes(Array(hdr.prefix(n))).with { bytes in
                    XCTAssertThrowsError(try EHFrameHeader(bytes: bytes, address: StatedAddress(hdrAddress)), "prefix \(n)")
                }
            }
            // A table entry pointing outside .eh_frame.
            var outside = hdr
            outside.replaceSubrange(16..<20, with: CFIBuilder.le(UInt32(0x7fff_0000)))
            try CFIBytes(outside).with { bytes in
                let h = try EHFrameHeader(bytes: bytes, address: StatedAddress(hdrAddress))
                XCTAssertThrowsError(try h.fde(for: StatedAddress(0x1010), in: s))
            }
        }
    }

    // MARK: - Helpers

    func withReader(_ bytes: [UInt8], address: UInt64 = 0, _ body: (inout DWARFReader) throws -> Void) throws {
        try CFIBytes(bytes).with { buffer in
            var r = DWARFReader(bytes: buffer, section: .expression, sectionAddress: StatedAddress(address))
            try body(&r)
        }
    }

    /// Targets reachable with `format` from the base `application` uses.
    func reachableTargets(_ format: PointerEncoding.Format, _ application: PointerEncoding.Application,
                          _ field: UInt64, _ bases: PointerBases) throws -> [UInt64] {
        let base: UInt64
        switch application {
        case .pcRelative: base = field
        case .textRelative: base = bases.text!.rawValue
        case .dataRelative: base = bases.data!.rawValue
        case .functionRelative: base = bases.function!.rawValue
        default: base = 0
        }
        var deltas: [Int64]
        switch format {
        case .udata2: deltas = [0, 1, 0xffff]
        case .sdata2: deltas = [0, -1, 0x7fff, -0x8000]
        case .udata4: deltas = [0, 0x1234, 0xffff_ffff]
        case .sdata4: deltas = [0, -0x1234, 0x7fff_ffff, -0x8000_0000]
        default: deltas = [0, 1, -1, 0x1234_5678_9abc, -0x1234_5678_9abc, Int64.max, Int64.min]
        }
        if format == .uleb128 || format == .udata8 || format == .absolute { deltas = deltas.filter { $0 >= 0 } + [-1] }
        if application == .aligned { return deltas.map { UInt64(bitPattern: $0) } }
        return deltas.map { base &+ UInt64(bitPattern: $0) }
    }

    static func uleb(_ v: UInt64) -> [UInt8] {
        var v = v, out: [UInt8] = []
        repeat {
            var byte = UInt8(v & 0x7f)
            v >>= 7
            if v != 0 { byte |= 0x80 }
            out.append(byte)
        } while v != 0
        return out
    }

    static func sleb(_ v: Int64) -> [UInt8] {
        var v = v, out: [UInt8] = []
        while true {
            let byte = UInt8(v & 0x7f)
            v >>= 7
            if (v == 0 && byte & 0x40 == 0) || (v == -1 && byte & 0x40 != 0) {
                out.append(byte)
                return out
            }
            out.append(byte | 0x80)
        }
    }

    /// `target` in encoding `enc` for a field at stated address `fieldAddress`.
    static func encode(_ target: UInt64, _ enc: PointerEncoding, fieldAddress: UInt64, bases: PointerBases) throws -> [UInt8] {
        var padding: [UInt8] = []
        var value = target
        switch enc.application {
        case .pcRelative: value = target &- fieldAddress
        case .textRelative: value = target &- (bases.text?.rawValue ?? 0)
        case .dataRelative: value = target &- (bases.data?.rawValue ?? 0)
        case .functionRelative: value = target &- (bases.function?.rawValue ?? 0)
        case .aligned: padding = [UInt8](repeating: 0, count: Int((8 - fieldAddress % 8) % 8))
        default: break
        }
        let bytes: [UInt8]
        switch enc.format {
        case .absolute, .udata8, .sdata8, .signed: bytes = CFIBuilder.le(value)
        case .uleb128: bytes = uleb(value)
        case .sleb128: bytes = sleb(Int64(bitPattern: value))
        case .udata2, .sdata2: bytes = CFIBuilder.le(UInt16(truncatingIfNeeded: value))
        case .udata4, .sdata4: bytes = CFIBuilder.le(UInt32(truncatingIfNeeded: value))
        default: throw CFIError.badPointerEncoding(section: .expression, offset: 0, encoding: enc.rawValue)
        }
        return padding + bytes
    }
}

// MARK: - Test support

/// Bytes in memory that outlive a section built over them (its `owner`).
final class CFIBytes: @unchecked Sendable {
    let buffer: UnsafeRawBufferPointer
    init(_ bytes: [UInt8]) {
        let m = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        m.copyBytes(from: bytes)
        buffer = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(m)[0..<bytes.count])
    }
    deinit { UnsafeMutableRawBufferPointer(mutating: UnsafeRawBufferPointer(start: buffer.baseAddress, count: max(buffer.count, 1))).deallocate() }
    func with<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R { try withExtendedLifetime(self) { try body(buffer) } }
}

/// Builds `.eh_frame`/`.debug_frame` bytes entry by entry (DWARF 5 §6.4.1,
/// LSB §10.6.1), so every field can be chosen and then corrupted.
struct CFIBuilder {
    var kind: CallFrameSection.Kind
    var address: UInt64
    var is64Bit = false
    var bytes: [UInt8] = []
    /// Pad entries to 8 bytes with DW_CFA_nop, as assemblers do (off to
    /// test operands cut short by the end of an entry).
    var pads = true
    /// Per CIE offset: its FDE encoding and whether it has "z" / an LSDA.
    var cies: [Int: (encoding: PointerEncoding, z: Bool, lsda: PointerEncoding, addressSize: Int)] = [:]

    init(kind: CallFrameSection.Kind, address: UInt64, is64Bit: Bool = false) {
        self.kind = kind; self.address = address; self.is64Bit = is64Bit
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    mutating func patchU32(at offset: Int, _ v: UInt32) { bytes.replaceSubrange(offset..<offset + 4, with: Self.le(v)) }

    mutating func terminator() { bytes += [0, 0, 0, 0] }

    /// Writes the length (and id) around `body`; returns the entry's offset.
    private mutating func entry(id: (_ idOffset: Int) -> UInt64, _ body: (inout CFIBuilder) -> Void) -> Int {
        let start = bytes.count
        if is64Bit { bytes += [0xff, 0xff, 0xff, 0xff] + Self.le(UInt64(0)) } else { bytes += Self.le(UInt32(0)) }
        let idOffset = bytes.count
        let idValue = id(idOffset)
        if kind == .debugFrame && is64Bit { bytes += Self.le(idValue) } else { bytes += Self.le(UInt32(truncatingIfNeeded: idValue)) }
        body(&self)
        // Pad to the address size with DW_CFA_nop, as assemblers do.
        while pads && (bytes.count - start) % 8 != 0 { bytes.append(0) }
        let length = bytes.count - idOffset
        if is64Bit {
            bytes.replaceSubrange(start + 4..<start + 12, with: Self.le(UInt64(length)))
        } else {
            bytes.replaceSubrange(start..<start + 4, with: Self.le(UInt32(length)))
        }
        return start
    }

    @discardableResult
    mutating func cie(version: UInt8 = 1, augmentation: String, caf: UInt64 = 1, daf: Int64 = -8, ra: UInt64 = 16,
                      addressSize: UInt8 = 8, segmentSize: UInt8 = 0, ehData: UInt64? = nil,
                      personality: (PointerEncoding, UInt64)? = nil, lsdaEncoding: PointerEncoding? = nil,
                      fdeEncoding: PointerEncoding? = nil, extraAugmentationData: [UInt8] = [],
                      instructions: [UInt8]) -> Int {
        let isDebug = kind == .debugFrame
        let start = entry(id: { _ in isDebug ? UInt64.max : 0 }) { b in
            b.bytes.append(version)
            b.bytes += Array(augmentation.utf8) + [0]
            if let e = ehData { b.bytes += CFIBuilder.le(e) }
            if version >= 4 { b.bytes += [addressSize, segmentSize] }
            b.bytes += CFITests.uleb(caf)
            b.bytes += CFITests.sleb(daf)
            if version == 1 { b.bytes.append(UInt8(truncatingIfNeeded: ra)) } else { b.bytes += CFITests.uleb(ra) }
            if augmentation.hasPrefix("z") {
                // Data: in the order of the letters; the personality pointer
                // is pcrel from its own field, so build it in place.
                var data: [UInt8] = []
                let lengthAt = b.bytes.count
                for c in augmentation.dropFirst() {
                    switch c {
                    case "P":
                        let (e, target) = personality!
                        data.append(e.rawValue)
                        // The field's address: section + (length byte(s) + data so far).
                        let field = b.address + UInt64(lengthAt + 1 + data.count)
                        data += try! CFITests.encode(target, PointerEncoding(rawValue: e.rawValue & 0x7f),
                                                     fieldAddress: field, bases: PointerBases())
                    case "L": data.append((lsdaEncoding ?? .omit).rawValue)
                    case "R": data.append((fdeEncoding ?? .absolute).rawValue)
                    default: break
                    }
                }
                data += extraAugmentationData
                precondition(data.count < 0x80)
                b.bytes += CFITests.uleb(UInt64(data.count)) + data
            }
            b.bytes += instructions
        }
        cies[start] = (fdeEncoding ?? .absolute, augmentation.hasPrefix("z"), lsdaEncoding ?? .omit, Int(addressSize))
        return start
    }

    @discardableResult
    mutating func fde(cie: Int, start: UInt64, length: UInt64, lsda: UInt64? = nil, augmentationData: [UInt8]? = nil,
                      segment: Int = 0, addressSize: Int = 8, instructions: [UInt8]) -> Int {
        fde(cie: cie, start: start, length: length, lsda: lsda, augmentationData: augmentationData, segment: segment,
            addressSize: addressSize) { _, _ in instructions }
    }

    /// `program` gets the builder and the section offset where the instructions start.
    @discardableResult
    mutating func fde(cie: Int, start: UInt64, length: UInt64, lsda: UInt64? = nil, augmentationData: [UInt8]? = nil,
                      segment: Int = 0, addressSize: Int = 8,
                      program: (CFIBuilder, Int) -> [UInt8]) -> Int {
        let info = cies[cie]!
        let isDebug = kind == .debugFrame
        return entry(id: { idOffset in isDebug ? UInt64(cie) : UInt64(idOffset - cie) }) { b in
            if isDebug {
                b.bytes += [UInt8](repeating: 0, count: segment)
                if addressSize == 4 {
                    b.bytes += CFIBuilder.le(UInt32(start)) + CFIBuilder.le(UInt32(length))
                } else {
                    b.bytes += CFIBuilder.le(start) + CFIBuilder.le(length)
                }
            } else {
                b.bytes += try! CFITests.encode(start, info.encoding, fieldAddress: b.address + UInt64(b.bytes.count),
                                                bases: PointerBases())
                b.bytes += try! CFITests.encode(length, PointerEncoding(rawValue: info.encoding.rawValue & 0x0f),
                                                fieldAddress: 0, bases: PointerBases())
            }
            if info.z {
                var data: [UInt8] = []
                if let l = lsda {
                    let field = b.address + UInt64(b.bytes.count + 1)
                    data += try! CFITests.encode(l, info.lsda, fieldAddress: field, bases: PointerBases())
                }
                data += augmentationData ?? []
                b.bytes += CFITests.uleb(UInt64(data.count)) + data
            }
            b.bytes += program(b, b.bytes.count)
        }
    }

    /// The section over a copy of `bytes`.
    func withSection<R>(_ body: (CallFrameSection) throws -> R) throws -> R {
        let storage = CFIBytes(bytes)
        let s = try CallFrameSection(kind: kind, bytes: storage.buffer, address: StatedAddress(address), owner: storage)
        return try body(s)
    }
}

/// The CFI tests' name for the shared seeded generator.
typealias CFIRandom = SplitMix64

extension StatedAddress {
    func cfiAdvanced(_ n: UInt64) -> StatedAddress { StatedAddress(rawValue &+ n) }
}
