import Foundation
import SprofBase
import SprofELF
@testable import SprofUnwind
import XCTest

/// Random corruptions of `.eh_frame`, `.debug_frame` and `.eh_frame_hdr`
/// bytes, and random DWARF expressions: every one must parse, evaluate or
/// throw a `CFIError` — no trap (out-of-bounds read, overflow), no hang.
///
/// Seeded, so a failure can be replayed: the failing seed is in the message.
/// As a unit test it runs a fixed number of cases; `bench/fuzz-cfi.sh` runs
/// it for a fixed time (`SPROF_CFI_FUZZ_SECONDS`, `SPROF_CFI_FUZZ_SEED`).
final class CFIFuzzTests: XCTestCase {
    /// Cases per corpus entry in a plain `swift test` run.
    static let unitTestCases = 400
    /// One case may take this long before it counts as a hang (debug build,
    /// a section of a few kilobytes: normally well under 10 ms).
    static let hangSeconds = 2.0

    struct Seed {
        var kind: CallFrameSection.Kind
        var address: UInt64
        var bytes: [UInt8]
        var header: [UInt8]?
        var headerAddress: UInt64
    }

    func testRandomCorruptionsNeverTrapOrHang() throws {
        let env = ProcessInfo.processInfo.environment
        let seconds = env["SPROF_CFI_FUZZ_SECONDS"].flatMap(Double.init)
        let baseSeed = env["SPROF_CFI_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0xcf1_f022
        let corpus = try Self.corpus()
        let start = Date()
        var cases = 0, outcomes = (entries: 0, errors: 0, rows: 0)
        var round: UInt64 = 0
        repeat {
            for (i, seed) in corpus.enumerated() {
                let caseSeed = baseSeed &+ round &* 7919 &+ UInt64(i)
                var rng = CFIRandom(seed: caseSeed)
                let n = seconds == nil ? Self.unitTestCases : 50
                for j in 0..<n {
                    var s = seed
                    let mutations = 1 + Int(rng.next() % 4)
                    for _ in 0..<mutations { Self.mutate(&s.bytes, &rng) }
                    if s.header != nil && rng.next() % 4 == 0 { Self.mutate(&s.header!, &rng) }
                    let t0 = Date()
                    let r = try Self.exercise(s, &rng)
                    outcomes.entries += r.entries; outcomes.errors += r.errors; outcomes.rows += r.rows
                    let elapsed = Date().timeIntervalSince(t0)
                    XCTAssertLessThan(elapsed, Self.hangSeconds, "seed \(caseSeed) case \(j) corpus \(i): a hang?")
                    cases += 1
                }
            }
            // Random expressions, biased towards valid opcodes.
            var rng = CFIRandom(seed: baseSeed &+ round)
            for _ in 0..<(seconds == nil ? 2000 : 500) { try Self.randomExpression(&rng) }
            round += 1
        } while seconds.map { Date().timeIntervalSince(start) < $0 } ?? false
        XCTAssertGreaterThan(outcomes.entries, 0)
        XCTAssertGreaterThan(outcomes.errors, 0)
        XCTAssertGreaterThan(outcomes.rows, 0)
        if seconds != nil {
            print("CFI fuzz: \(cases) corrupted sections, \(outcomes.entries) entries, \(outcomes.rows) rows, "
                  + "\(outcomes.errors) errors in \(Int(Date().timeIntervalSince(start))) s (seed \(baseSeed))")
        }
    }

    // MARK: - Corpus

    static func corpus() throws -> [Seed] {
        var seeds: [Seed] = []
        // A hand-built .eh_frame with every feature, and its .eh_frame_hdr.
        var b = CFIBuilder(kind: .ehFrame, address: 0x20_0000)
        let cie = b.cie(augmentation: "zPLR", personality: (PointerEncoding(rawValue: 0x9b), 0x30_0000),
                        lsdaEncoding: PointerEncoding(rawValue: 0x1b), fdeEncoding: PointerEncoding(rawValue: 0x1b),
                        instructions: CFITests.standardCIE)
        let sig = b.cie(augmentation: "zRS", fdeEncoding: PointerEncoding(rawValue: 0x1b), instructions: [])
        var fdes: [(UInt64, Int)] = []
        fdes.append((0x1000, b.fde(cie: cie, start: 0x1000, length: 0x80, lsda: 0x40_0000, instructions: [
            0x41, 0x0e, 0x10, 0x86, 0x02, 0x43, 0x0d, 0x06, 0x45, 0x83, 0x03, 0x0a, 0x4a, 0x0c, 0x07, 0x08, 0xc3, 0xc6,
            0x41, 0x0b, 0x2e, 0x10, 0x11, 0x0c, 0x7d, 0x14, 0x0d, 0x02, 0x09, 0x0e, 0x0f, 0x07, 0x0f, 0x08, 0x0e,
        ])))
        fdes.append((0x1100, b.fde(cie: cie, start: 0x1100, length: 0x60, lsda: 0x40_0100,
                                   instructions: [0x0e, 0x10, 0x46, 0x0e, 0x18, 0x4a] + [0x0f, 0x0b] + CFIExpressionTests.pltCFA)))
        var sigProgram: [UInt8] = [0x0f, 0x04, 0x77, 0xa0, 0x01, 0x06]
        for r in 0...16 {
            let offset = CFITests.sleb(Int64(40 + 8 * r))
            sigProgram += [0x10, UInt8(r), UInt8(1 + offset.count), 0x77] + offset
        }
        sigProgram += [0x16, 0x11, 0x05, 0x31, 0x28, 0x01, 0x00, 0x32]  // val_expression with a branch
        fdes.append((0x1200, b.fde(cie: sig, start: 0x1200, length: 0x10, instructions: sigProgram)))
        b.terminator()
        let hdrAddress: UInt64 = 0x1f_f000
        var hdr: [UInt8] = [1, 0x1b, 0x03, 0x3b]
        hdr += CFIBuilder.le(UInt32(truncatingIfNeeded: Int64(b.address) - Int64(hdrAddress + 4)))
        hdr += CFIBuilder.le(UInt32(fdes.count))
        for (start, offset) in fdes {
            hdr += CFIBuilder.le(UInt32(truncatingIfNeeded: Int64(start) - Int64(hdrAddress)))
            hdr += CFIBuilder.le(UInt32(truncatingIfNeeded: Int64(b.address) + Int64(offset) - Int64(hdrAddress)))
        }
        seeds.append(Seed(kind: .ehFrame, address: b.address, bytes: b.bytes, header: hdr, headerAddress: hdrAddress))
        // .debug_frame, 64-bit DWARF, version 4 with a segment selector.
        var d = CFIBuilder(kind: .debugFrame, address: 0, is64Bit: true)
        let dc = d.cie(version: 4, augmentation: "", caf: 4, daf: -8, ra: 30, addressSize: 8, segmentSize: 1,
                       instructions: [0x0c, 0x1f, 0x00])
        _ = d.fde(cie: dc, start: 0x8000, length: 0x100, segment: 1, instructions: [
            0x01, 0x10, 0x80, 0, 0, 0, 0, 0, 0, 0x0e, 0x20, 0x9d, 0x04, 0x9e, 0x03, 0x42, 0x0a, 0x0e, 0x30, 0x41, 0x0b,
        ])
        seeds.append(Seed(kind: .debugFrame, address: 0, bytes: d.bytes, header: nil, headerAddress: 0))
        // The first few kilobytes of libc's .eh_frame (real CIEs, PLT and
        // remember/restore FDEs), at its real address.
        if FileManager.default.fileExists(atPath: CFIRealSectionTests.libc) {
            let elf = try ELFFile(path: CFIRealSectionTests.libc)
            if let s = try elf.section(named: ".eh_frame") {
                seeds.append(Seed(kind: .ehFrame, address: s.address.rawValue, bytes: Array(s.bytes.prefix(4096)),
                                  header: nil, headerAddress: 0))
            }
        }
        return seeds
    }

    // MARK: - Mutation

    static let interesting32: [UInt32] = [0, 1, 4, 8, 0x7f, 0x80, 0xff, 0x7fff_ffff, 0x8000_0000, 0xffff_fff0,
                                          0xffff_fffe, 0xffff_ffff]
    static let interesting8: [UInt8] = [0, 1, 0x0a, 0x0b, 0x0f, 0x10, 0x16, 0x2f, 0x40, 0x7f, 0x80, 0xc0, 0xff]

    static func mutate(_ bytes: inout [UInt8], _ rng: inout CFIRandom) {
        guard !bytes.isEmpty else {
            bytes.append(UInt8(truncatingIfNeeded: rng.next()))
            return
        }
        let at = Int(rng.next() % UInt64(bytes.count))
        switch rng.next() % 8 {
        case 0: bytes[at] ^= 1 << (rng.next() % 8)
        case 1: bytes[at] = interesting8[Int(rng.next() % UInt64(interesting8.count))]
        case 2:
            let v = interesting32[Int(rng.next() % UInt64(interesting32.count))]
            let end = min(bytes.count, at + 4)
            bytes.replaceSubrange(at..<end, with: CFIBuilder.le(v).prefix(end - at))
        case 3: bytes.removeSubrange(at..<min(bytes.count, at + 1 + Int(rng.next() % 16)))
        case 4: bytes.removeLast(Int(rng.next() % UInt64(bytes.count)))
        case 5:
            let slice = bytes[at..<min(bytes.count, at + 1 + Int(rng.next() % 32))]
            bytes.insert(contentsOf: slice, at: Int(rng.next() % UInt64(bytes.count)))
        case 6: bytes.insert(contentsOf: (0..<(1 + rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, at: at)
        default: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
        }
    }

    // MARK: - Exercise

    /// Parses everything in `seed`, computes every row, evaluates every rule.
    static func exercise(_ seed: Seed, _ rng: inout CFIRandom) throws -> (entries: Int, errors: Int, rows: Int) {
        var result = (entries: 0, errors: 0, rows: 0)
        let storage = CFIBytes(seed.bytes)
        let section = try CallFrameSection(kind: seed.kind, bytes: storage.buffer, address: StatedAddress(seed.address),
                                           owner: storage)
        let context = CFIContext()
        let registerSeed = rng.next()
        let readRegister: (DWARFRegister) -> UInt64? = { r in
            r.rawValue % 7 == 6 ? nil : (registerSeed ^ UInt64(r.rawValue) &* 0x9e37_79b9) & 0x7fff_ffff_fff8
        }
        let readMemory: (ProcessAddress, Int) -> UInt64? = { a, _ in
            a.rawValue % 5 == 0 ? nil : a.rawValue &* 0x2545_f491_4f6c_dd1d
        }
        var fdes: [FrameDescriptionEntry] = []
        var it = section.entries()
        while !it.isFinished {
            do throws(CFIError) {
                guard let e = try it.next() else { break }
                result.entries += 1
                guard case .fde(let fde) = e else { continue }
                fdes.append(fde)
                let rows = try section.rows(of: fde, context: context)
                result.rows += rows.count
                for row in rows.prefix(64) {
                    _ = try? section.row(for: row.start, in: fde, context: context)
                    guard let cfa = try? section.cfa(of: row, readRegister: readRegister, readMemory: readMemory) else {
                        continue
                    }
                    for entry in row.registers {
                        _ = try? section.recover(entry.register, rule: entry.rule, cfa: cfa, readRegister: readRegister,
                                                 readMemory: readMemory)
                    }
                }
                let span = max(fde.addressRange, 1)
                _ = try? section.row(for: StatedAddress(fde.initialLocation.rawValue &+ rng.next() % span), in: fde,
                                     context: context)
            } catch {
                result.errors += 1
                _ = error.description
            }
        }
        if let h = seed.header {
            let hs = CFIBytes(h)
            do throws(CFIError) {
                let hdr = try EHFrameHeader(bytes: hs.buffer, address: StatedAddress(seed.headerAddress), owner: hs)
                for _ in 0..<16 {
                    let a = fdes.isEmpty ? rng.next() : fdes[Int(rng.next() % UInt64(fdes.count))].initialLocation.rawValue
                    _ = try? hdr.fde(for: StatedAddress(a &+ rng.next() % 64), in: section)
                }
            } catch {
                result.errors += 1
                _ = error.description
            }
        }
        return result
    }

    /// Evaluates a random expression: mostly valid opcodes with random operands.
    static func randomExpression(_ rng: inout CFIRandom) throws {
        let common: [UInt8] = [0x06, 0x08, 0x09, 0x0a, 0x0b, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x19, 0x1a,
                               0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29,
                               0x2f, 0x30, 0x31, 0x3f, 0x50, 0x77, 0x80, 0x90, 0x92, 0x94, 0x96, 0x9c, 0x9f]
        var bytes: [UInt8] = []
        for _ in 0..<(rng.next() % 24) {
            if rng.next() % 3 == 0 {
                bytes.append(UInt8(truncatingIfNeeded: rng.next()))
            } else {
                bytes.append(common[Int(rng.next() % UInt64(common.count))])
            }
        }
        let storage = CFIBytes(bytes)
        let e = DWARFExpression(bytes: storage.buffer)
        do throws(CFIError) {
            _ = try e.evaluate(initialValue: rng.next() % 2 == 0 ? nil : rng.next(), cfa: rng.next() % 2 == 0 ? nil : 0x7000,
                               readRegister: { r in r.rawValue > 40 ? nil : UInt64(r.rawValue) &* 0x1000 },
                               readMemory: { a, _ in a.rawValue % 3 == 0 ? nil : a.rawValue >> 3 })
        } catch {
            _ = error.description
        }
        withExtendedLifetime(storage) {}
    }
}
