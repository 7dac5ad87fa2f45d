import Foundation
import SprofBase
import SprofELF
import XCTest
@testable import SprofCapture
@testable import SprofUnwind

/// The bounds that keep a profiler's memory and time in check against
/// processes that abuse it (the agent-level tests with real abusers are
/// Tests/KernelTests/AbuseTests.swift): mappings kept per process, and
/// table rows per binary.
final class ResourceBoundTests: XCTestCase {
    private func mapping(_ start: UInt64, _ perms: MappingPermissions, inode: UInt64 = 0, offset: UInt64 = 0, path: String = "") -> Mapping {
        Mapping(start: ProcessAddress(start), end: ProcessAddress(start + 0x1000), fileOffset: FileOffset(offset),
                permissions: perms, deviceMajor: inode == 0 ? 0 : 8, deviceMinor: 0, inode: inode, path: path)
    }

    /// A process that maps one page of its executable 5,000 times keeps its
    /// executable's and libraries' text, its vDSO and stack; the copies fill
    /// what is left of the bound, then nothing else.
    func testKeptMappingsPreferCodeOverCopies() {
        var maps: [Mapping] = [
            mapping(0x1000, [.read], inode: 1, offset: 0, path: "/bin/app"),
            mapping(0x2000, [.read, .execute], inode: 1, offset: 0x1000, path: "/bin/app"),
            mapping(0x3000, [.read, .write], inode: 1, offset: 0x2000, path: "/bin/app"),
        ]
        for i in 0..<5000 {
            let at = 0x10_0000 + UInt64(i) * 0x2000
            maps.append(mapping(at, [.read, .execute], inode: 1, offset: 0, path: "/bin/app"))
            maps.append(mapping(at + 0x1000, [.read, .write]))
        }
        let top: UInt64 = 0x7f00_0000_0000
        maps += [mapping(top, [.read, .execute], inode: 2, offset: 0x26000, path: "/lib/libc.so.6"),
                 mapping(top + 0x10000, [.read, .execute], path: "[vdso]"),
                 mapping(top + 0x20000, [.read, .write], path: "[stack]")]
        let kept = ProcessTable.keep(maps, limit: 100)
        XCTAssertEqual(kept.count, 100)
        XCTAssertEqual(kept.map(\.start), kept.map(\.start).sorted(), "address order")
        let paths = Set(kept.filter { $0.isExecutable && $0.fileOffset != FileOffset(0) }.map(\.path))
        XCTAssertEqual(paths, ["/bin/app", "/lib/libc.so.6"], "every text segment kept")
        // Copies rank before anonymous and special mappings: 100 - 2 text segments = 98 copies.
        XCTAssertEqual(kept.filter { $0.isExecutable && $0.fileOffset == FileOffset(0) && $0.inode == 1 }.count, 98)
        XCTAssertFalse(kept.contains { $0.path == "[vdso]" })
        XCTAssertEqual(ProcessTable.keep(Array(maps.prefix(50)), limit: 100), Array(maps.prefix(50)), "under the bound: unchanged")
    }

    /// This test process read with a bound of 16 mappings: 16 kept, the rest counted.
    func testProcessTableCountsShedMappings() {
        let table = ProcessTable(maxMappingsPerProcess: 16)
        XCTAssertEqual(table.refresh(pid: getpid()), .running)
        let all = (try? ProcMaps.read(pid: getpid()))?.count ?? 0
        XCTAssertGreaterThan(all, 16, "a Swift test process maps more than 16 areas")
        XCTAssertEqual(table.mappings(of: getpid()).count, 16)
        XCTAssertEqual(table.statistics.oversizedReads, 1)
        XCTAssertGreaterThan(table.statistics.shedMappings, 0)
        // The test binary's own code is among those kept.
        let here = ProcessAddress(UInt64(UInt(bitPattern: unsafeBitCast(Self.marker as @convention(c) () -> Void, to: UnsafeRawPointer.self))))
        XCTAssertNotNil(table.mapping(containing: here, pid: getpid()), "the text holding this test is kept")
    }

    private static let marker: @convention(c) () -> Void = {}

    /// libc's CFI compiles to a few thousand rows: with room for 100 it is
    /// refused (and says why), with room for all it loads; a cache whose
    /// bound per binary is under it remembers the refusal and counts it.
    func testModuleOverTheRowBoundIsShed() throws {
        let libc = "/usr/lib/x86_64-linux-gnu/libc.so.6"
        guard FileManager.default.fileExists(atPath: libc) else { throw XCTSkip("no \(libc)") }
        let elf = try ELFFile(path: libc)
        let full = try UnwindModule(elf: elf)
        XCTAssertGreaterThan(full.table.count, 1000)
        XCTAssertThrowsError(try UnwindModule.$maxTableRows.withValue(100) { try UnwindModule(elf: elf) }) { error in
            guard case UnwindError.tableTooLarge(let path, _, let limit) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(path, libc)
            XCTAssertEqual(limit, 100)
        }
        XCTAssertNoThrow(try UnwindModule.$maxTableRows.withValue(full.table.count * 2) { try UnwindModule(elf: elf) })

        // 64 KiB of cache: 16 KiB for one binary, about 680 rows.
        let cache = ModuleCache(memoryLimit: 64 << 10)
        let m = mapping(0x7f00_0000_0000, [.read, .execute], inode: 3, offset: 0x26000, path: libc)
        var opened = 0
        for _ in 0..<3 {
            XCTAssertNil(cache.module(for: m) { _ in opened += 1; return try UnwindModule(elf: elf) })
        }
        XCTAssertEqual(opened, 1, "the refusal is remembered: the CFI is read once")
        XCTAssertEqual(cache.statistics.shedModules, 1)
        XCTAssertEqual(cache.memoryBytes, 0)
        XCTAssertTrue(cache.shedFailures.first?.contains("could make") ?? false, "\(cache.shedFailures)")
        XCTAssertTrue(cache.noteStop(in: m))
        XCTAssertEqual(cache.statistics.shedSamples, 1)
        // Not dropped as idle: reading it again would cost the CFI again.
        cache.dropUnused(since: cache.useMark + 1)
        XCTAssertEqual(cache.shedFailures.count, 1)
    }
}
