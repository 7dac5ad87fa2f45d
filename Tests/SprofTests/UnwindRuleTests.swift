import SprofBase
import XCTest
@testable import SprofUnwind

final class UnwindTableTests: XCTestCase {
    let sp8 = UnwindRuleX86_64(kind: .spOffset, cfaOffset: 8)
    let sp16 = UnwindRuleX86_64(kind: .spOffset, cfaOffset: 16)
    let fp = UnwindRuleX86_64(kind: .bpOffsetBPSaved, cfaOffset: 16, bpOffset: -16)

    func testLookupAndGaps() {
        let t = UnwindTable(rows: [(0x1010, 0x1020, sp16), (0x1000, 0x1010, sp8), (0x2000, 0x2100, fp)])
        XCTAssertEqual(t.rule(at: 0x0fff), .noCFI)
        XCTAssertEqual(t.rule(at: 0x1000), sp8)
        XCTAssertEqual(t.rule(at: 0x100f), sp8)
        XCTAssertEqual(t.rule(at: 0x1010), sp16)
        XCTAssertEqual(t.rule(at: 0x1020), .noCFI, "the gap after an FDE has no CFI")
        XCTAssertEqual(t.rule(at: 0x1fff), .noCFI)
        XCTAssertEqual(t.rule(at: 0x20ff), fp)
        XCTAssertEqual(t.rule(at: 0x2100), .noCFI)
        XCTAssertEqual(t.rule(at: .max), .noCFI)
    }

    func testOverlapNeverExtendsARuleBeyondItsRow() {
        // An FDE nested in another: after the inner one ends, nothing is guessed.
        let t = UnwindTable(rows: [(0x1000, 0x1100, sp8), (0x1040, 0x1050, sp16)])
        XCTAssertEqual(t.rule(at: 0x1000), sp8)
        XCTAssertEqual(t.rule(at: 0x1045), sp16)
        XCTAssertEqual(t.rule(at: 0x1050), .noCFI)
    }

    func testEmptyAndDegenerateRows() {
        XCTAssertEqual(UnwindTable(rows: []).rule(at: 5), .noCFI)
        XCTAssertEqual(UnwindTable(rows: [(10, 10, sp8)]).rule(at: 10), .noCFI)
    }

    func testRuleIsEightBytes() {
        XCTAssertEqual(MemoryLayout<UnwindRuleX86_64>.size, 8)
    }
}

final class CallDetectionTests: XCTestCase {
    func ends(_ bytes: [UInt8]) -> Bool { bytes.withUnsafeBytes { CallDetectionX86_64.endsWithCall($0) } }

    /// Encodings from `objdump -d` of gcc output.
    func testCallEncodings() {
        XCTAssertTrue(ends([0x90, 0xe8, 0x10, 0x20, 0x30, 0x40]), "call rel32")
        XCTAssertTrue(ends([0x90, 0xff, 0xd0]), "call *%rax")
        XCTAssertTrue(ends([0x41, 0xff, 0xd0]), "call *%r8")
        XCTAssertTrue(ends([0xff, 0x15, 1, 2, 3, 4]), "call *disp32(%rip)")
        XCTAssertTrue(ends([0xff, 0x50, 0x08]), "call *0x8(%rax)")
        XCTAssertTrue(ends([0xff, 0x14, 0x24]), "call *(%rsp)")
        XCTAssertTrue(ends([0xff, 0x54, 0x24, 0x08]), "call *0x8(%rsp)")
    }

    func testNotCalls() {
        XCTAssertFalse(ends([0x90, 0x90, 0x90, 0x90, 0x90]))
        XCTAssertFalse(ends([0xff, 0xe0]), "jmp *%rax is /4")
        XCTAssertFalse(ends([0x48, 0x89, 0xe5]), "mov %rsp,%rbp")
        XCTAssertFalse(ends([]))
        XCTAssertFalse(ends([0xe8]))
    }
}

final class StackMemoryTests: XCTestCase {
    func testReadsOnlyInsideTheCopy() {
        let bytes: [UInt8] = (0..<24).map { UInt8($0) }
        bytes.withUnsafeBytes { b in
            let m = StackMemory(base: 0x1000, bytes: b)
            XCTAssertEqual(m.read(0x1000), 0x0706050403020100)
            XCTAssertEqual(m.read(0x1010), 0x1716151413121110)
            XCTAssertNil(m.read(0x1011), "would run past the copy")
            XCTAssertNil(m.read(0x0ff8), "below sp")
            XCTAssertNil(m.read(0), "wraps")
            XCTAssertNil(m.read(.max))
        }
        [UInt8]().withUnsafeBytes { XCTAssertNil(StackMemory(base: 0, bytes: $0).read(0)) }
    }
}
