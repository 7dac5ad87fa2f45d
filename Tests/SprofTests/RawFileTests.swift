import Foundation
import XCTest
@testable import SprofCapture
import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// The raw recording file: format round trips, damaged files, atomic writes,
/// and `sprof dump` output. No BPF: every sample is made up.
final class RawFileTests: XCTestCase {
    private var directory = ""
    /// tmpfs mounts made by a test, unmounted in tearDown.
    private var mounts: [String] = []

    override func setUpWithError() throws {
        directory = NSTemporaryDirectory() + "RawFileTests-" + String(UInt64.random(in: 0...UInt64.max), radix: 16)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws {
        for m in mounts.reversed() {
            chmod(m, 0o755)
            if umount(m) != 0 { XCTFail("umount \(m): \(String(cString: strerror(errno)))") }
        }
        mounts = []
        try? FileManager.default.removeItem(atPath: directory)
    }

    // MARK: Fixtures

    static let metadata = RawMetadata(
        sprofVersion: "0.1.0-test", kernelRelease: "6.8.0-45-generic", hostname: "build host",
        wallClockStartNanoseconds: 1_714_564_800_123_456_789, monotonicStartNanoseconds: 1_000_000_000,
        frequency: 99, userStackSize: 32768, target: "pids 1234,5678",
        variants: ["ringbuf", "find_vma", "task_pt_regs"], extra: ["queue": "64M", "ünïcode key": "välue"])

    static func mappings(_ base: UInt64, path: String, buildID: BuildID? = nil) -> [Mapping] {
        [
            Mapping(start: ProcessAddress(base), end: ProcessAddress(base + 0x1000), fileOffset: FileOffset(0),
                    permissions: [.read], deviceMajor: 8, deviceMinor: 1, inode: 42, path: path, buildID: buildID),
            Mapping(start: ProcessAddress(base + 0x1000), end: ProcessAddress(base + 0x5000), fileOffset: FileOffset(0x1000),
                    permissions: [.read, .execute], deviceMajor: 8, deviceMinor: 1, inode: 42, path: path, buildID: buildID),
            Mapping(start: ProcessAddress(0x7ff0_0000_0000), end: ProcessAddress(0x7ff0_0000_2000), fileOffset: FileOffset(0),
                    permissions: [.read, .write, .shared], path: ""),
            Mapping(start: ProcessAddress(0x7ffd_0000_0000), end: ProcessAddress(0x7ffd_0002_1000), fileOffset: FileOffset(0),
                    permissions: [.read, .write], path: "[stack]"),
        ]
    }

    static func sample(tgid: Int32, tid: Int32? = nil, time: UInt64, ip: UInt64 = 0x40_1234, comm: String = "worker",
                       kernel: [UInt64] = [], user: [UInt8] = [], flags: SampleFlags = [.userRegisters],
                       kind: SampleKind = .cpu) -> RawSample {
        RawSample(kind: kind, flags: flags, tgid: tgid, tid: tid ?? tgid, timeNanoseconds: time, cpu: 3,
                  comm: Comm(comm), ip: ProcessAddress(ip), sp: ProcessAddress(0x7ffd_0000_1000),
                  bp: ProcessAddress(0x7ffd_0000_1080), weight: kind == .offCPU ? 5000 : 0,
                  stackEnd: ProcessAddress(0x7ffd_0002_1000), userStackRequested: 32768,
                  kernelStack: kernel.map { KernelAddress($0) }, userStack: user)
    }

    static func randomSample(_ rng: inout SplitMix64, index: Int) -> RawSample {
        let kernelCount: Int
        let userCount: Int
        switch index % 5 {
        case 0: kernelCount = 0; userCount = 0                              // empty stacks
        case 1: kernelCount = SampleLayout.maxKernelFrames; userCount = SampleLayout.maxUserStack // both at the maximum
        case 2: kernelCount = 0; userCount = SampleLayout.maxUserStack      // a whole 64 KiB user stack
        default: kernelCount = Int.random(in: 0...20, using: &rng); userCount = Int.random(in: 0...4096, using: &rng)
        }
        var user = [UInt8](repeating: 0, count: userCount)
        for i in user.indices { user[i] = UInt8.random(in: 0...255, using: &rng) }
        let kernel = (0..<kernelCount).map { _ in 0xffff_ffff_8100_0000 | UInt64.random(in: 0...0xff_ffff, using: &rng) }
        let comms = ["worker", "héllo wörld ✓", "a", "", "exactly15chars!", "名前付きスレッド"]
        return RawSample(
            kind: index % 7 == 0 ? .offCPU : .cpu,
            flags: SampleFlags(rawValue: UInt32.random(in: 0...0xff, using: &rng)),
            tgid: Int32.random(in: 1...Int32.max, using: &rng), tid: Int32.random(in: 1...Int32.max, using: &rng),
            timeNanoseconds: UInt64.random(in: 0...UInt64.max, using: &rng), cpu: UInt32.random(in: 0...1023, using: &rng),
            comm: Comm(comms[index % comms.count]),
            ip: ProcessAddress(rng.next()), sp: ProcessAddress(rng.next()), bp: ProcessAddress(rng.next()),
            weight: rng.next(), stackEnd: index % 3 == 0 ? nil : ProcessAddress(rng.next() | 1),
            userStackRequested: UInt32.random(in: 0...65536, using: &rng),
            kernelStack: kernel.map { KernelAddress($0) }, userStack: user)
    }

    func assertSame(_ a: RawSample, _ b: RawSample, _ context: String = "", file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.kind, b.kind, context, file: file, line: line)
        XCTAssertEqual(a.flags, b.flags, context, file: file, line: line)
        XCTAssertEqual(a.tgid, b.tgid, context, file: file, line: line)
        XCTAssertEqual(a.tid, b.tid, context, file: file, line: line)
        XCTAssertEqual(a.timeNanoseconds, b.timeNanoseconds, context, file: file, line: line)
        XCTAssertEqual(a.cpu, b.cpu, context, file: file, line: line)
        XCTAssertEqual(a.comm, b.comm, context, file: file, line: line)
        XCTAssertEqual(a.ip, b.ip, context, file: file, line: line)
        XCTAssertEqual(a.sp, b.sp, context, file: file, line: line)
        XCTAssertEqual(a.bp, b.bp, context, file: file, line: line)
        XCTAssertEqual(a.weight, b.weight, context, file: file, line: line)
        XCTAssertEqual(a.stackEnd, b.stackEnd, context, file: file, line: line)
        XCTAssertEqual(a.userStackRequested, b.userStackRequested, context, file: file, line: line)
        XCTAssertEqual(a.kernelFrameCount, b.kernelFrameCount, context, file: file, line: line)
        XCTAssertEqual(a.stackBytes, b.stackBytes, context, file: file, line: line)
    }

    func path(_ name: String) -> String { directory + "/" + name }

    func contents(_ p: String) -> [UInt8]? { FileManager.default.contents(atPath: p).map { [UInt8]($0) } }

    /// Names in the test directory other than `except`: temporary files left behind.
    func strayFiles(in dir: String, except: Set<String>) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).filter { !except.contains($0) }.sorted()
    }

    func expectError(_ expected: (CaptureError) -> Bool, _ body: () throws -> Void,
                     file: StaticString = #filePath, line: UInt = #line) -> CaptureError? {
        do {
            try body()
            XCTFail("no error thrown", file: file, line: line)
            return nil
        } catch let e as CaptureError {
            XCTAssertTrue(expected(e), "unexpected error: \(e)", file: file, line: line)
            return e
        } catch {
            XCTFail("not a CaptureError: \(error)", file: file, line: line)
            return nil
        }
    }

    /// A tmpfs mount for this test (root only); nil with the reason when it
    /// cannot be made.
    func mountTmpfs(_ name: String, options: String, readOnly: Bool = false) -> String? {
        let dir = path(name)
        mkdir(dir, 0o755)
        let flags: UInt = readOnly ? UInt(MS_RDONLY) : 0
        guard mount("tmpfs", dir, "tmpfs", flags, options) == 0 else { return nil }
        mounts.append(dir)
        return dir
    }

    // MARK: Round trip

    func testRoundTripOfEveryRecordType() throws {
        var rng = SplitMix64(state: 0x5eed_2024)
        let file = path("round trip.raw")
        let writer = try RawFileWriter(path: file, bufferCapacity: 100_000)  // smaller than a max sample: exercises flushing
        try writer.writeMetadata(Self.metadata)
        let processes = [
            RawProcess(pid: 1234, command: "my prog", executablePath: "/opt/my app/bin/my prog"),
            RawProcess(pid: 5678, command: "名前", executablePath: "", exited: true),
            RawProcess(pid: 1234, command: "my prog", executablePath: "/opt/my app/bin/my prog",
                       exitTimeNanoseconds: 9_000_000_000),
        ]
        let id = BuildID(hex: "0123456789abcdef0123456789abcdef01234567")!
        let snapshots = [
            RawMappingSnapshot(pid: 1234, generation: 1, mappings: Self.mappings(0x40_0000, path: "/opt/my app/bin/my prog", buildID: id)),
            RawMappingSnapshot(pid: 5678, generation: 7, mappings: Self.mappings(0x50_0000, path: "/usr/lib/libc.so.6 (deleted)")),
            RawMappingSnapshot(pid: 9, generation: 0, mappings: []),
        ]
        for p in processes.prefix(2) { try writer.writeProcess(p) }
        for s in snapshots { try writer.writeMappings(pid: s.pid, generation: s.generation, mappings: s.mappings) }
        var samples: [RawSample] = []
        for i in 0..<60 {
            let s = Self.randomSample(&rng, index: i)
            samples.append(s)
            try writer.writeSample(s)
        }
        try writer.writeProcess(processes[2])
        let stats = RawStats(samplesWritten: 999, samplesLost: 17, counters: ["lost": 17, "emitted": 77, "runs": 80],
                             durationNanoseconds: 10_000_000_123, endReason: "interrupted")
        let size = try writer.finish(stats: stats)
        XCTAssertEqual(writer.samplesWritten, 60)

        let r = try RawFileReader(path: file)
        XCTAssertEqual(UInt64(r.fileSize), size)
        XCTAssertEqual(r.formatVersion, .current)
        XCTAssertEqual(r.writerVersion, "0.1.0-test")
        XCTAssertEqual(r.metadata, Self.metadata)
        XCTAssertEqual(r.processRecords, processes)
        // One entry per pid, the last record of each, in order of first appearance.
        XCTAssertEqual(r.processes, [processes[2], processes[1]])
        XCTAssertEqual(r.process(pid: 1234)?.exitTimeNanoseconds, 9_000_000_000)
        XCTAssertEqual(r.process(pid: 5678)?.exited, true)
        XCTAssertNil(r.process(pid: 5678)?.exitTimeNanoseconds)
        XCTAssertEqual(r.snapshots, snapshots)
        XCTAssertEqual(r.snapshots[0].mappings[1].buildID, id)
        XCTAssertNil(r.snapshots[1].mappings[0].buildID)
        var expected = stats
        expected.samplesWritten = 60  // the writer's own count wins
        XCTAssertEqual(r.stats, expected)
        XCTAssertEqual(r.sampleCount, 60)
        XCTAssertFalse(r.isTruncated)
        XCTAssertTrue(r.isComplete)
        XCTAssertEqual(r.warnings, [])

        var read: [RawSample] = []
        r.forEachSample { s, _ in read.append(s) }
        XCTAssertEqual(read.count, samples.count)
        for (i, (a, b)) in zip(samples, read).enumerated() { assertSame(a, b, "sample \(i)") }
        // The extremes really are in there.
        XCTAssertTrue(read.contains { $0.userStackCount == SampleLayout.maxUserStack && $0.kernelFrameCount == SampleLayout.maxKernelFrames })
        XCTAssertTrue(read.contains { $0.stackBytes.isEmpty })
        XCTAssertTrue(read.contains { $0.comm.description == Comm("héllo wörld ✓").description })

        // Compact: a sample costs its 100-byte frame + fixed part and its stacks, nothing more.
        let stackTotal = samples.reduce(0) { $0 + $1.stackBytes.count }
        XCTAssertLessThan(r.fileSize, stackTotal + 60 * (RawFrame.size + RawSampleLayout.fixedSize) + 4096)
    }

    func testSamplesAreReadWithTheSnapshotInForce() throws {
        let file = path("generations.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        let gen1 = Self.mappings(0x40_0000, path: "/bin/old")
        let gen2 = Self.mappings(0x80_0000, path: "/bin/new after exec")
        try w.writeSample(Self.sample(tgid: 100, time: 1))               // before any snapshot
        try w.writeMappings(pid: 100, generation: 1, mappings: gen1)
        try w.writeSample(Self.sample(tgid: 100, time: 2))
        try w.writeMappings(pid: 200, generation: 1, mappings: gen2)
        try w.writeSample(Self.sample(tgid: 100, time: 3))               // still gen 1: pid 200's snapshot is not its own
        try w.writeSample(Self.sample(tgid: 200, time: 4))
        try w.writeSample(Self.sample(tgid: 300, time: 5))               // never snapshotted
        try w.writeMappings(pid: 100, generation: 2, mappings: gen2)
        try w.writeSample(Self.sample(tgid: 100, time: 6))
        try w.writeSample(Self.sample(tgid: 200, time: 7))
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "target exited"))

        let r = try RawFileReader(path: file)
        var seen: [(UInt64, Int32?, UInt64?)] = []
        r.forEachSample { s, m in seen.append((s.timeNanoseconds, m?.pid, m?.generation)) }
        let expected: [(UInt64, Int32?, UInt64?)] = [(1, nil, nil), (2, 100, 1), (3, 100, 1), (4, 200, 1),
                                                     (5, nil, nil), (6, 100, 2), (7, 200, 1)]
        XCTAssertEqual(seen.map { "\($0)" }, expected.map { "\($0)" })
        XCTAssertEqual(r.mappings(pid: 100, generation: 1)?.mappings, gen1)
        XCTAssertEqual(r.mappings(pid: 100, generation: 2)?.mappings, gen2)
        XCTAssertNil(r.mappings(pid: 100, generation: 3))

        // Filtered by pid, association unchanged.
        var only: [(UInt64, UInt64?)] = []
        r.forEachSample(pid: 100) { s, m in only.append((s.timeNanoseconds, m?.generation)) }
        let expectedOnly: [(UInt64, UInt64?)] = [(1, nil), (2, 1), (3, 1), (6, 2)]
        XCTAssertEqual(only.map { "\($0)" }, expectedOnly.map { "\($0)" })
        XCTAssertEqual(r.sampleCounts, [100: 4, 200: 2, 300: 1])

        // mapping(containing:) picks the right one and nothing outside.
        let snap = try XCTUnwrap(r.mappings(pid: 100, generation: 1))
        XCTAssertEqual(snap.mapping(containing: ProcessAddress(0x40_1234))?.fileOffset, FileOffset(0x1000))
        XCTAssertEqual(snap.mapping(containing: ProcessAddress(0x40_0000))?.fileOffset, FileOffset(0))
        XCTAssertNil(snap.mapping(containing: ProcessAddress(0x40_5000)))
        XCTAssertNil(snap.mapping(containing: ProcessAddress(0x10)))
        XCTAssertEqual(snap.mapping(containing: ProcessAddress(0x7ffd_0000_1000))?.path, "[stack]")
    }

    // MARK: Locations (format 1.2)

    /// Named addresses written at the end of a recording read back equal,
    /// keyed as reports look them up; a count the record cannot hold is a
    /// malformed-record error, not a crash.
    func testLocationsRoundTrip() throws {
        let file = path("locations.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        let user = RawLocation(
            key: .init(pid: 1234, generation: 2, address: 0x40_1234, isReturnAddress: true, isKernel: false),
            kind: 0, module: "/usr/bin/server", moduleOffset: 0x1234,
            frames: [.init(function: "mix", systemName: "mix", file: "/src/a.c", line: 7, isInlined: true),
                     .init(function: "app::run(double)", systemName: "_ZN3app3runEd", file: "/src/a.cpp", line: 42, isInlined: false)])
        let kernel = RawLocation(
            key: .init(pid: 0, generation: 0, address: 0xffff_ffff_8100_0010, isReturnAddress: false, isKernel: true),
            kind: 1, module: "[kernel.kallsyms]", moduleOffset: 0xffff_ffff_8100_0010,
            frames: [.init(function: "schedule", systemName: "schedule", file: "", line: 0, isInlined: false)])
        // More than one record's worth (4,096 a record).
        let many = (0..<5000).map { i in
            RawLocation(key: .init(pid: 9, generation: 1, address: UInt64(i), isReturnAddress: false, isKernel: false),
                        kind: 3, module: "[unknown]", moduleOffset: UInt64(i),
                        frames: [.init(function: "[unknown]+0x\(String(i, radix: 16))", systemName: "x", file: "", line: 0, isInlined: false)])
        }
        try w.writeLocations([user, kernel] + many)
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        let r = try RawFileReader(path: file)
        XCTAssertEqual(r.locations.count, 5002)
        XCTAssertEqual(r.locations[user.key], user)
        XCTAssertEqual(r.locations[kernel.key], kernel)
        XCTAssertEqual(r.locations[many[4999].key], many[4999])
        XCTAssertEqual(r.skippedRecords, [:])
        XCTAssertTrue(r.warnings.isEmpty, "\(r.warnings)")

        // A locations record claiming more entries than it holds.
        let bad = path("bad-locations.raw")
        let w2 = try RawFileWriter(path: bad)
        try w2.writeMetadata(Self.metadata)
        try w2.writeRecord(type: .locations, payload: [0xff, 0xff, 0x00, 0x00, 1, 2, 3])
        try w2.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        XCTAssertThrowsError(try RawFileReader(path: bad)) { error in
            XCTAssertTrue("\(error)".contains("locations"), "\(error)")
        }
    }

    // MARK: Unwound samples (format 1.1)

    /// Writes `s` as an unwound sample with these frames.
    static func writeUnwound(_ w: RawFileWriter, _ s: RawSample, frames: [UInt64], stop: UInt8) throws {
        try frames.withUnsafeBufferPointer { try w.writeUnwoundSample(s, userFrames: $0, stop: stop) }
    }

    /// What reading back `raw` written with `frames` and `stop` must give.
    static func expectedUnwound(_ raw: RawSample, frames: [UInt64], stop: UInt8) -> RawSample {
        RawSample(kind: raw.kind, flags: raw.flags, tgid: raw.tgid, tid: raw.tid, timeNanoseconds: raw.timeNanoseconds,
                  cpu: raw.cpu, comm: raw.comm, ip: raw.ip, sp: raw.sp, bp: raw.bp, weight: raw.weight,
                  stackEnd: raw.stackEnd, userStackRequested: raw.userStackRequested, kernelStack: raw.kernelStack,
                  userFrames: frames.map { ProcessAddress($0) }, unwindStop: stop,
                  capturedUserStackCount: raw.userStackCount)
    }

    func assertSameUnwound(_ a: RawSample, _ b: RawSample, _ context: String = "",
                           file: StaticString = #filePath, line: UInt = #line) {
        assertSame(a, b, context, file: file, line: line)
        XCTAssertEqual(a.userFrameCount, b.userFrameCount, context, file: file, line: line)
        XCTAssertEqual(a.unwindStop, b.unwindStop, context, file: file, line: line)
        XCTAssertEqual(a.isUnwound, b.isUnwound, context, file: file, line: line)
        XCTAssertEqual(a.capturedUserStackCount, b.capturedUserStackCount, context, file: file, line: line)
        XCTAssertEqual(a.userFrames, b.userFrames, context, file: file, line: line)
        XCTAssertEqual(a.kernelStack, b.kernelStack, context, file: file, line: line)
    }

    func testUnwoundSamplesRoundTrip() throws {
        var rng = SplitMix64(state: 0x0eb1_1234)
        let file = path("unwound.raw")
        let w = try RawFileWriter(path: file, bufferCapacity: 4096)  // smaller than 512 frames: exercises flushing
        try w.writeMetadata(Self.metadata)
        try w.writeMappings(pid: 7, generation: 1, mappings: Self.mappings(0x40_0000, path: "/bin/seven"))
        // (kernel frames, user frames, stop, user-stack bytes captured)
        let shapes: [(Int, Int, UInt8, Int)] = [
            (0, 0, 0, 0), (0, 1, 0, 512), (3, 1, 5, 8), (0, 512, 3, 65536), (SampleLayout.maxKernelFrames, 512, 0, 4096),
            (2, 0, 8, 0), (1, 7, 255, 100), (0, 2, 0, 16),
        ]
        var expected: [RawSample] = []
        var sizes: [Int] = []
        for (i, (k, n, stop, u)) in shapes.enumerated() {
            var raw = Self.randomSample(&rng, index: 3)  // random fixed fields
            raw.tgid = 7
            raw.kernelFrameCount = k
            raw.stackBytes = (0..<(k * 8 + u)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let frames = (0..<n).map { _ in rng.next() }
            let before = Int(w.bytesWritten)
            try Self.writeUnwound(w, raw, frames: frames, stop: stop)
            sizes.append(Int(w.bytesWritten) - before)
            expected.append(Self.expectedUnwound(raw, frames: frames, stop: stop))
            // The record size is the layout's: frame, fixed part, kernel frames, 4-byte header, 8 bytes a frame.
            XCTAssertEqual(sizes[i], RawFrame.size + RawSampleLayout.fixedSize + 8 * k + 4 + 8 * n, "shape \(i)")
        }
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        XCTAssertEqual(w.samplesWritten, UInt64(shapes.count))

        let r = try RawFileReader(path: file)
        XCTAssertEqual(r.formatVersion, RawFormatVersion(major: 1, minor: 2))
        XCTAssertEqual(r.sampleCount, shapes.count)
        XCTAssertEqual(r.unwoundSampleCount, shapes.count)
        XCTAssertEqual(r.sampleCounts, [7: shapes.count])
        XCTAssertEqual(r.warnings, [], "the stats count includes unwound samples")
        XCTAssertTrue(r.isComplete)
        var read: [RawSample] = []
        r.forEachSample { s, m in
            XCTAssertEqual(m?.generation, 1)
            read.append(s)
        }
        XCTAssertEqual(read.count, expected.count)
        for (i, (a, b)) in zip(expected, read).enumerated() {
            assertSameUnwound(a, b, "sample \(i)")
            XCTAssertTrue(b.isUnwound)
            XCTAssertTrue(b.userStack.isEmpty, "sample \(i)")
            XCTAssertEqual(b.userStackCount, 0)
            XCTAssertEqual(b.stackBytes.count, 8 * (b.kernelFrameCount + b.userFrameCount!))
            for j in 0..<b.userFrameCount! { XCTAssertEqual(b.userFrame(j), a.userFrames[j]) }
        }
        XCTAssertEqual(read.map(\.userFrameCount), shapes.map { $0.1 })
        XCTAssertEqual(read.map(\.unwindStop), shapes.map { $0.2 })
        XCTAssertEqual(read.map(\.capturedUserStackCount), shapes.map { $0.3 })

        // Copying samples through writeSample keeps them unwound, byte for byte.
        let copy = path("copy.raw")
        let w2 = try RawFileWriter(path: copy, bufferCapacity: 4096)
        try w2.writeMetadata(Self.metadata)
        try w2.writeMappings(pid: 7, generation: 1, mappings: Self.mappings(0x40_0000, path: "/bin/seven"))
        try r.forEachSample { (s, _) throws(CaptureError) in try w2.writeSample(s) }
        try w2.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        XCTAssertEqual(contents(copy), contents(file))
        // So does writeUnwoundSample with an unwound sample and new frames: the captured count stays.
        let w3 = try RawFileWriter(path: path("reunwound.raw"))
        try w3.writeMetadata(Self.metadata)
        try Self.writeUnwound(w3, read[3], frames: [1, 2], stop: 9)
        try w3.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        var again: [RawSample] = []
        try RawFileReader(path: path("reunwound.raw")).forEachSample { s, _ in again.append(s) }
        XCTAssertEqual(again.map(\.userFrames), [[ProcessAddress(1), ProcessAddress(2)]])
        XCTAssertEqual(again.map(\.capturedUserStackCount), [65536])
        XCTAssertEqual(again.map(\.kernelFrameCount), [0])
        XCTAssertEqual(again.map(\.unwindStop), [9])
    }

    func testUnwoundSampleBytesAreTheDocumentedLayout() throws {
        let raw = Self.sample(tgid: 0x0102_0304, tid: 0x0506_0708, time: 0x1112_1314_1516_1718, ip: 0x40_1234,
                              comm: "abc", kernel: [0xffff_ffff_8100_0010], user: [9, 9, 9, 9, 9],
                              flags: [.userRegisters, .viaFindVMA])
        let w = try RawFileWriter(path: path("layout.raw"))
        try w.writeMetadata(Self.metadata)
        let start = Int(w.bytesWritten)
        try Self.writeUnwound(w, raw, frames: [0x40_1234, 0x40_2345], stop: 2)
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        let bytes = try XCTUnwrap(contents(path("layout.raw")))
        XCTAssertEqual(Array(bytes[RawHeader.majorOffset..<(RawHeader.majorOffset + 4)]), [1, 0, 2, 0], "format 1.2")
        // Hand-encoded from docs/raw-format.md.
        var e = RawEncoder()
        e.u32(6); e.u32(92 + 8 + 4 + 16)
        e.u16(1); e.u16(1); e.u32(raw.flags.rawValue); e.i32(0x0102_0304); e.i32(0x0506_0708)
        e.u64(0x1112_1314_1516_1718); e.u32(3); e.u32(32768)
        e.u64(0x40_1234); e.u64(0x7ffd_0000_1000); e.u64(0x7ffd_0000_1080); e.u64(0); e.u64(0x7ffd_0002_1000)
        e.u32(5)                                           // user-stack bytes copied at capture, not in the record
        e.bytes += Array("abc".utf8) + [UInt8](repeating: 0, count: 13)
        e.u64(0xffff_ffff_8100_0010)                       // kernel frame
        e.u16(2); e.u8(2); e.u8(0)                         // frame count, stop, reserved
        e.u64(0x40_1234); e.u64(0x40_2345)
        XCTAssertEqual(Array(bytes[start..<(start + e.bytes.count)]), e.bytes)
    }

    func testMixedRawAndUnwoundSamples() throws {
        var rng = SplitMix64(state: 0x0313_3d)
        let file = path("mixed.raw")
        let w = try RawFileWriter(path: file, bufferCapacity: 100_000)
        try w.writeMetadata(Self.metadata)
        try w.writeMappings(pid: 1, generation: 1, mappings: Self.mappings(0x40_0000, path: "/bin/one"))
        var expected: [RawSample] = []
        for i in 0..<200 {
            var s = Self.randomSample(&rng, index: i)
            s.tgid = Int32(1 + i % 3)
            if i == 100 { try w.writeMappings(pid: 1, generation: 2, mappings: Self.mappings(0x80_0000, path: "/bin/two")) }
            // Runs of each kind, and alternation: the cursor's reused storage must reset between them.
            if (i / 3) % 2 == 1 || i % 7 == 0 {
                let frames = (0..<Int.random(in: 0...40, using: &rng)).map { _ in rng.next() }
                let stop = UInt8.random(in: 0...9, using: &rng)
                try Self.writeUnwound(w, s, frames: frames, stop: stop)
                expected.append(Self.expectedUnwound(s, frames: frames, stop: stop))
            } else {
                try w.writeSample(s)
                expected.append(s)
            }
            if i % 50 == 0 { try w.writeProcess(RawProcess(pid: s.tgid, command: "p", executablePath: "")) }
        }
        try w.finish(stats: RawStats(samplesLost: 3, durationNanoseconds: 1, endReason: "interrupted"))

        let r = try RawFileReader(path: file)
        let unwound = expected.filter(\.isUnwound).count
        XCTAssertGreaterThan(unwound, 50)
        XCTAssertLessThan(unwound, 150)
        XCTAssertEqual(r.sampleCount, 200)
        XCTAssertEqual(r.unwoundSampleCount, unwound)
        XCTAssertEqual(r.stats?.samplesWritten, 200)
        XCTAssertEqual(r.sampleCounts, [1: 67, 2: 67, 3: 66])
        XCTAssertEqual(r.warnings, [])
        var read: [(RawSample, UInt64?)] = []
        r.forEachSample { s, m in read.append((s, m?.generation)) }
        XCTAssertEqual(read.count, 200)
        for (i, (a, (b, generation))) in zip(expected, read).enumerated() {
            assertSameUnwound(a, b, "sample \(i)")
            if !a.isUnwound { XCTAssertEqual(Array(a.userStack), Array(b.userStack), "sample \(i)") }
            XCTAssertEqual(generation, a.tgid == 1 ? (i < 100 ? 1 : 2) : nil, "sample \(i)")
        }
        // Filtered by pid: both kinds, in file order.
        var only: [RawSample] = []
        r.forEachSample(pid: 2) { s, _ in only.append(s) }
        XCTAssertEqual(only.map(\.timeNanoseconds), expected.filter { $0.tgid == 2 }.map(\.timeNanoseconds))
        XCTAssertEqual(only.map(\.isUnwound), expected.filter { $0.tgid == 2 }.map(\.isUnwound))
        // The cursor's returned sample is a value: keeping one does not see later ones.
        var cursor = r.makeSampleCursor()
        let first = try XCTUnwrap(cursor.next()).sample
        while cursor.next() != nil {}
        assertSameUnwound(first, expected[0])
    }

    /// Type 4 is unchanged in 1.1, byte for byte, and a reader that does not
    /// know type 6 — as a 1.0 reader — reads a 1.1 file's raw samples as
    /// before, skipping the unwound ones with its unknown-record warning.
    func testReadersThatDoNotKnowUnwoundSamplesStillReadTheRest() throws {
        // A type-4 record hand-encoded from the 1.0 table.
        let raw = Self.sample(tgid: 5, time: 77, comm: "x", kernel: [0xffff_ffff_8100_0020], user: [1, 2, 3])
        var e = RawEncoder()
        e.u32(4); e.u32(92 + 8 + 3)
        e.u16(1); e.u16(1); e.u32(raw.flags.rawValue); e.i32(5); e.i32(5); e.u64(77); e.u32(3); e.u32(32768)
        e.u64(0x40_1234); e.u64(0x7ffd_0000_1000); e.u64(0x7ffd_0000_1080); e.u64(0); e.u64(0x7ffd_0002_1000)
        e.u32(3); e.bytes += [UInt8(ascii: "x")] + [UInt8](repeating: 0, count: 15)
        e.u64(0xffff_ffff_8100_0020); e.bytes += [1, 2, 3]

        let file = path("for-old-readers.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        let start = Int(w.bytesWritten)
        try w.writeSample(raw)
        try Self.writeUnwound(w, raw, frames: [0x40_1234, 0x40_4000], stop: 0)
        try w.writeSample(Self.sample(tgid: 5, time: 78, user: [4]))
        try Self.writeUnwound(w, Self.sample(tgid: 6, time: 79), frames: [], stop: 1)
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        var bytes = try XCTUnwrap(contents(file))
        XCTAssertEqual(Array(bytes[start..<(start + e.bytes.count)]), e.bytes, "type 4 is the 1.0 layout")

        // What a 1.0 reader sees: type 6 is a type it does not know. Renumber
        // those records to a type this reader does not know either.
        var offset = RawHeader.size
        var renumbered = 0
        while offset < bytes.count {
            let type = bytes[offset..<(offset + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) }
            let length = Int(bytes[(offset + 4)..<(offset + 8)].reversed().reduce(0) { $0 << 8 | UInt32($1) })
            if type == 6 { bytes[offset] = 0xee; bytes[offset + 1] = 0xee; renumbered += 1 }
            offset += 8 + length
        }
        XCTAssertEqual(offset, bytes.count, "every record frame is skippable by its length")
        XCTAssertEqual(renumbered, 2)
        let old = try RawFileReader(bytes: bytes, name: "old")
        XCTAssertEqual(old.sampleCount, 2)
        XCTAssertEqual(old.unwoundSampleCount, 0)
        var users: [[UInt8]] = []
        old.forEachSample { s, _ in
            XCTAssertFalse(s.isUnwound)
            users.append(Array(s.userStack))
        }
        XCTAssertEqual(users, [[1, 2, 3], [4]])
        XCTAssertEqual(old.warnings, ["skipped 2 records of unknown type 61166 (written by a newer sprof?)",
                                      "the stats record counts 4 samples but the file holds 2"])

        // A 1.0 file (header minor 0, type-4 samples only) reads without a word.
        let (small, _, _) = try smallFile()
        var v10 = small
        v10[RawHeader.minorOffset] = 0
        let r10 = try RawFileReader(bytes: v10)
        XCTAssertEqual(r10.formatVersion, RawFormatVersion(major: 1, minor: 0))
        XCTAssertEqual(r10.sampleCount, 4)
        XCTAssertEqual(r10.unwoundSampleCount, 0)
        XCTAssertEqual(r10.warnings, ["skipped 1 record of unknown type 77 (written by a newer sprof?)"])
        r10.forEachSample { s, _ in XCTAssertNil(s.userFrameCount); XCTAssertEqual(s.unwindStop, 0) }
    }

    func testMalformedUnwoundSamplesAreErrorsNotCrashes() throws {
        let (bytes, ends, _) = try smallFile(unwound: true)
        // Sample 1 (unwound, 1 kernel frame, 3 user frames) starts where sample 0 ends.
        let at = ends[3]
        let countAt = at + RawFrame.size + RawSampleLayout.fixedSize + 8 + RawSampleLayout.userFrameCount
        XCTAssertEqual(bytes[countAt], 3)
        var lying = bytes
        lying[countAt] = 4
        let e = expectError({ if case .malformedRecord(_, at, "unwound sample", _) = $0 { return true } else { return false } }) {
            _ = try RawFileReader(bytes: lying)
        }
        XCTAssertTrue(e?.description.contains("cannot hold 1 kernel frames and 4 user frames") ?? false, "\(String(describing: e))")
        // Kernel frames running into the frame count.
        var kernel = bytes
        kernel[at + RawFrame.size + RawSampleLayout.kernelFrameCount] = 5
        _ = expectError({ if case .malformedRecord(_, at, "unwound sample", _) = $0 { return true } else { return false } }) {
            _ = try RawFileReader(bytes: kernel)
        }
        // Too short for the fixed part.
        var short = bytes
        short[at + 4] = 10; short[at + 5] = 0
        XCTAssertThrowsError(try RawFileReader(bytes: short))
        // A huge captured-byte count is only diagnostics: still read.
        var captured = bytes
        for i in 0..<4 { captured[at + RawFrame.size + RawSampleLayout.userStackLength + i] = 0xff }
        var counts: [Int] = []
        try RawFileReader(bytes: captured).forEachSample { s, _ in counts.append(s.capturedUserStackCount) }
        XCTAssertEqual(counts, [0, Int(UInt32.max), 48, 72])
        // An unknown sample kind in an unwound record: skipped with the same warning.
        var kind = bytes
        kind[at + RawFrame.size + RawSampleLayout.kind] = 9
        let r = try RawFileReader(bytes: kind)
        XCTAssertEqual(r.sampleCount, 3)
        XCTAssertTrue(r.warnings.contains("skipped 1 sample of unknown kind 9"), "\(r.warnings)")
        // Random corruption: an error or a reading, never a crash.
        var rng = SplitMix64(state: 11)
        for _ in 0..<2000 {
            var b = bytes
            for _ in 0..<3 { b[Int.random(in: RawHeader.size..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if let r = try? RawFileReader(bytes: b) { r.forEachSample { s, _ in _ = s.userFrames } }
        }
    }

    // MARK: Damaged files

    /// A small complete file, and the offset at which each record ends.
    /// `unwound`: samples 1 and 3 are unwound-sample records (sample i with
    /// ``smallFileFrames(i)`` and stop i), 0 and 2 raw.
    func smallFile(unwound: Bool = false) throws -> (bytes: [UInt8], recordEnds: [Int], samplesBefore: [Int]) {
        let file = path("small-\(UInt32.random(in: 0...UInt32.max)).raw")
        let w = try RawFileWriter(path: file)
        var ends: [Int] = []
        var samples: [Int] = []
        var n = 0
        func mark() { ends.append(Int(w.bytesWritten)); samples.append(n) }
        try w.writeMetadata(Self.metadata); mark()
        try w.writeProcess(RawProcess(pid: 10, command: "p", executablePath: "/bin/p")); mark()
        try w.writeMappings(pid: 10, generation: 1, mappings: Self.mappings(0x40_0000, path: "/bin/p")); mark()
        for i in 0..<4 {
            let s = Self.sample(tgid: 10, time: UInt64(i), kernel: [0xffff_ffff_8100_0000 + UInt64(i)],
                                user: [UInt8](repeating: UInt8(i), count: 24 * i))
            if unwound && i % 2 == 1 {
                try Self.smallFileFrames(i).withUnsafeBufferPointer { try w.writeUnwoundSample(s, userFrames: $0, stop: UInt8(i)) }
            } else {
                try w.writeSample(s)
            }
            n += 1; mark()
        }
        try w.writeRecord(type: RawRecordType(rawValue: 77), payload: [1, 2, 3]); mark()
        let size = try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 5, endReason: "duration elapsed"))
        ends.append(Int(size)); samples.append(n)
        return (try XCTUnwrap(contents(file)), ends, samples)
    }

    static func smallFileFrames(_ i: Int) -> [UInt64] { (0..<UInt64(3 * i)).map { 0x40_1000 + 0x10 * $0 } }

    func testTruncatedAtEveryCutPoint() throws {
        try checkTruncatedAtEveryCutPoint(unwound: false)
    }

    /// The same with unwound-sample records among the samples: every cut
    /// inside one (its fixed part, kernel frames, frame count, frames) is a
    /// truncation, never a crash or a malformed record.
    func testTruncatedAtEveryCutPointWithUnwoundSamples() throws {
        try checkTruncatedAtEveryCutPoint(unwound: true)
    }

    func checkTruncatedAtEveryCutPoint(unwound: Bool, file: StaticString = #filePath, line: UInt = #line) throws {
        let (bytes, ends, samplesBefore) = try smallFile(unwound: unwound)
        let metadataEnd = ends[0]
        for cut in 0..<bytes.count {
            let prefix = Array(bytes[..<cut])
            if cut < metadataEnd {
                _ = expectError({ if case .truncatedHeader = $0 { return true } else { return false } }) {
                    _ = try RawFileReader(bytes: prefix, name: "cut")
                }
                continue
            }
            let r: RawFileReader
            do { r = try RawFileReader(bytes: prefix, name: "cut") } catch {
                XCTFail("cut at \(cut): \(error)"); continue
            }
            // The last record boundary at or before the cut.
            let complete = ends.lastIndex { $0 <= cut }!
            XCTAssertEqual(r.isTruncated, ends[complete] != cut, "cut at \(cut)")
            XCTAssertEqual(r.truncatedAtOffset, ends[complete] != cut ? ends[complete] : nil, "cut at \(cut)")
            XCTAssertEqual(r.sampleCount, samplesBefore[complete], "cut at \(cut)")
            var n = 0
            r.forEachSample { s, m in
                XCTAssertEqual(s.timeNanoseconds, UInt64(n))
                XCTAssertEqual(s.kernelStack, [KernelAddress(0xffff_ffff_8100_0000 + UInt64(n))])
                if unwound && n % 2 == 1 {
                    XCTAssertEqual(s.userFrameCount, 3 * n)
                    XCTAssertEqual(s.userFrames.map(\.rawValue), Self.smallFileFrames(n))
                    XCTAssertEqual(s.unwindStop, UInt8(n))
                    XCTAssertEqual(s.userStackCount, 0)
                    XCTAssertEqual(s.capturedUserStackCount, 24 * n)
                } else {
                    XCTAssertNil(s.userFrameCount)
                    XCTAssertEqual(s.userStackCount, 24 * n)
                    XCTAssertEqual(s.userStack.first, n == 0 ? nil : UInt8(n))
                }
                XCTAssertEqual(m?.generation, 1)
                n += 1
            }
            XCTAssertEqual(n, samplesBefore[complete], "cut at \(cut)")
            XCTAssertEqual(r.metadata, Self.metadata)
            XCTAssertNil(r.stats)
            XCTAssertFalse(r.isComplete)
            XCTAssertFalse(r.warnings.isEmpty, "cut at \(cut): a damaged file must say so")
            if complete >= 1 { XCTAssertEqual(r.processes.count, 1) }
        }
        // And uncut, everything.
        let whole = try RawFileReader(bytes: bytes)
        XCTAssertTrue(whole.isComplete)
        XCTAssertEqual(whole.sampleCount, 4)
        XCTAssertEqual(whole.unwoundSampleCount, unwound ? 2 : 0)
        XCTAssertEqual(whole.warnings, ["skipped 1 record of unknown type 77 (written by a newer sprof?)"])
    }

    /// A process written again (at its exit, or as anything else that
    /// became known) is one process: ``RawFileReader/processes`` holds its
    /// last record, in the place of its first.
    func testRepeatedProcessRecordsKeepTheLatest() throws {
        let file = path("repeats.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        let a1 = RawProcess(pid: 30, command: "a", executablePath: "/bin/a")
        let b1 = RawProcess(pid: 10, command: "b", executablePath: "")
        let c1 = RawProcess(pid: 20, command: "c", executablePath: "/bin/c")
        let a2 = RawProcess(pid: 30, command: "a", executablePath: "/bin/a", exitTimeNanoseconds: 1_500_000_000)
        let b2 = RawProcess(pid: 10, command: "b", executablePath: "", exited: true)
        let b3 = RawProcess(pid: 10, command: "b", executablePath: "", exitTimeNanoseconds: 1_700_000_000)
        for p in [a1, b1] { try w.writeProcess(p) }
        try w.writeSample(Self.sample(tgid: 30, time: 1_100_000_000))
        try w.writeProcess(c1)
        try w.writeSample(Self.sample(tgid: 10, time: 1_200_000_000))
        for p in [a2, b2] { try w.writeProcess(p) }
        try w.writeSample(Self.sample(tgid: 30, time: 1_600_000_000))  // a sample after the exit record is still its pid's
        try w.writeProcess(b3)
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "target exited"))

        let r = try RawFileReader(path: file)
        XCTAssertEqual(r.processRecords, [a1, b1, c1, a2, b2, b3])
        XCTAssertEqual(r.processes, [a2, b3, c1])
        XCTAssertEqual(r.processes.map(\.pid), [30, 10, 20])
        for p in r.processes { XCTAssertEqual(r.process(pid: p.pid), p) }
        XCTAssertNil(r.process(pid: 99))
        XCTAssertEqual(r.sampleCounts, [30: 2, 10: 1])
        // The dump lists each process once, with its exit.
        let text = RawDump.render(r)
        XCTAssertTrue(text.contains("processes         3\n"), text)
        XCTAssertTrue(text.contains("/bin/a  2 samples, exited at 500.000 ms\n"), text)
        XCTAssertTrue(text.contains("-  1 samples, exited at 700.000 ms\n"), text)
        XCTAssertTrue(text.contains("/bin/c  0 samples\n"), text)
        XCTAssertEqual(text.components(separatedBy: "       30  a ").count, 2, text)
    }

    func testEmptyAndForeignFiles() throws {
        _ = expectError({ $0 == .truncatedHeader(path: "empty", size: 0) }) { _ = try RawFileReader(bytes: [], name: "empty") }
        let e = expectError({ $0 == .notARawFile(path: "elf") }) {
            _ = try RawFileReader(bytes: [0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0] + [UInt8](repeating: 0, count: 100), name: "elf")
        }
        XCTAssertEqual(e?.description, "elf is not a sprof raw recording (it does not start with \"SPROFRAW\")")
        _ = expectError({ $0 == .notARawFile(path: "short") }) { _ = try RawFileReader(bytes: Array("SPRX".utf8), name: "short") }
        // From disk: an empty file (read, not mapped) and a missing one.
        _ = FileManager.default.createFile(atPath: path("empty.raw"), contents: Data())
        _ = expectError({ if case .truncatedHeader = $0 { return true } else { return false } }) {
            _ = try RawFileReader(path: self.path("empty.raw"))
        }
        let missing = expectError({ $0 == .cannotOpen(path: self.path("nope.raw"), errno: ENOENT) }) {
            _ = try RawFileReader(path: self.path("nope.raw"))
        }
        XCTAssertTrue(missing?.description.contains("No such file or directory (ENOENT)") ?? false)
    }

    func testNewerMajorVersionIsRefused() throws {
        var (bytes, _, _) = try smallFile()
        bytes[RawHeader.majorOffset] = 2
        bytes[RawHeader.minorOffset] = 0
        let e = expectError({ $0 == .unsupportedVersion(path: "new.raw", found: RawFormatVersion(major: 2, minor: 0), writer: "0.1.0-test") }) {
            _ = try RawFileReader(bytes: bytes, name: "new.raw")
        }
        XCTAssertEqual(e?.description, "new.raw is raw format 2.0, written by sprof 0.1.0-test; "
                       + "this sprof reads raw format 1.x only. Read it with sprof 0.1.0-test or newer.")
    }

    func testNewerMinorVersionIsReadWithAWarning() throws {
        var (bytes, _, _) = try smallFile()
        bytes[RawHeader.minorOffset] = 9
        let r = try RawFileReader(bytes: bytes)
        XCTAssertEqual(r.formatVersion, RawFormatVersion(major: 1, minor: 9))
        XCTAssertEqual(r.sampleCount, 4)
        XCTAssertTrue(r.warnings.contains { $0.hasPrefix("format 1.9 is newer") }, "\(r.warnings)")
    }

    func testUnknownRecordTypesAndTrailingFieldsAreSkipped() throws {
        let file = path("future.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        try w.writeRecord(type: RawRecordType(rawValue: 1000), payload: [UInt8](repeating: 0xee, count: 1000))
        try w.writeSample(Self.sample(tgid: 1, time: 1, user: [1, 2, 3]))
        try w.writeRecord(type: RawRecordType(rawValue: 0xdead), payload: [])
        try w.writeRecord(type: RawRecordType(rawValue: 1000), payload: [1])
        // A process record from a later minor version, with a field appended.
        var e = RawEncoder()
        e.i32(42); e.u32(0); e.u64(0); e.string("future"); e.string("/bin/future"); e.u64(0x1234_5678)
        try w.writeRecord(type: .process, payload: e.bytes)
        try w.writeSample(Self.sample(tgid: 1, time: 2, user: [4, 5]))
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))

        let r = try RawFileReader(path: file)
        XCTAssertEqual(r.skippedRecords, [RawRecordType(rawValue: 1000): 2, RawRecordType(rawValue: 0xdead): 1])
        XCTAssertEqual(r.processes, [RawProcess(pid: 42, command: "future", executablePath: "/bin/future")])
        var users: [[UInt8]] = []
        r.forEachSample { s, _ in users.append(Array(s.userStack)) }
        XCTAssertEqual(users, [[1, 2, 3], [4, 5]])
        XCTAssertTrue(r.isComplete)
        XCTAssertEqual(r.warnings, ["skipped 2 records of unknown type 1000 (written by a newer sprof?)",
                                    "skipped 1 record of unknown type 57005 (written by a newer sprof?)"])
    }

    func testMalformedRecordsAreErrorsNotCrashes() throws {
        let (bytes, ends, _) = try smallFile()
        // The first sample record starts where the mappings record ends.
        let sampleAt = ends[2]
        var lying = bytes
        // Claim 200 kernel frames in a record that holds one.
        lying[sampleAt + RawFrame.size + RawSampleLayout.kernelFrameCount] = 200
        _ = expectError({ if case .malformedRecord(_, sampleAt, "sample", _) = $0 { return true } else { return false } }) {
            _ = try RawFileReader(bytes: lying)
        }
        // A mapping count far beyond the payload.
        var huge = bytes
        let countAt = ends[1] + RawFrame.size + 4
        huge[countAt + 3] = 0x7f
        let e = expectError({ if case .malformedRecord(_, ends[1], "mappings", _) = $0 { return true } else { return false } }) {
            _ = try RawFileReader(bytes: huge)
        }
        XCTAssertTrue(e?.description.contains("mappings cannot fit") ?? false, "\(String(describing: e))")
        // A record before the metadata.
        var noMeta = Array(bytes[..<RawHeader.size])
        noMeta += Array(bytes[sampleAt..<ends[3]])
        _ = expectError({ $0 == .missingMetadata(path: "<memory>") }) { _ = try RawFileReader(bytes: noMeta) }
        // Random corruption anywhere after the header: an error or a reading, never a crash.
        var rng = SplitMix64(state: 7)
        for _ in 0..<2000 {
            var b = bytes
            for _ in 0..<3 { b[Int.random(in: RawHeader.size..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            if let r = try? RawFileReader(bytes: b) { r.forEachSample { _, _ in } }
        }
    }

    // MARK: Atomic writes

    func testCommitReplacesTheDestinationAtomically() throws {
        let dest = path("out.raw")
        _ = FileManager.default.createFile(atPath: dest, contents: Data("old".utf8))
        let old = umask(0o022)
        defer { umask(old) }
        let f = try AtomicFile(destination: dest, bufferCapacity: 16)
        XCTAssertTrue(f.temporaryPath.hasPrefix(directory + "/.out.raw.tmp-"))
        try f.write(Array("hello, ".utf8))
        try f.write(Array(repeating: UInt8(ascii: "x"), count: 100))  // larger than the buffer
        XCTAssertEqual(contents(dest), Array("old".utf8), "nothing visible before commit")
        try f.commit()
        XCTAssertEqual(contents(dest), Array("hello, ".utf8) + Array(repeating: UInt8(ascii: "x"), count: 100))
        XCTAssertEqual(f.bytesWritten, 107)
        var st = stat()
        XCTAssertEqual(stat(dest, &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600, "private by default (SafeFile.privateFileMode)")
        let privateFile = try AtomicFile(destination: path("private.raw"), mode: 0o600)
        try privateFile.commit()
        XCTAssertEqual(stat(path("private.raw"), &st), 0)
        XCTAssertEqual(st.st_mode & 0o777, 0o600)
        XCTAssertEqual(strayFiles(in: directory, except: ["out.raw", "private.raw"]), [])
        _ = expectError({ $0 == .closed(path: dest) }) { try f.write([1]) }
    }

    func testAbandonedOrDroppedWriterLeavesTheDestinationUntouched() throws {
        let dest = path("keep.raw")
        _ = FileManager.default.createFile(atPath: dest, contents: Data("precious".utf8))
        do {
            let w = try RawFileWriter(path: dest)
            try w.writeMetadata(Self.metadata)
            for i in 0..<100 { try w.writeSample(Self.sample(tgid: 1, time: UInt64(i), user: [UInt8](repeating: 1, count: 30_000))) }
            w.abandon()
            w.abandon()  // idempotent
        }
        XCTAssertEqual(contents(dest), Array("precious".utf8))
        XCTAssertEqual(strayFiles(in: directory, except: ["keep.raw"]), [])
        do {
            let w = try RawFileWriter(path: dest)
            try w.writeMetadata(Self.metadata)
            try w.writeSample(Self.sample(tgid: 1, time: 1))
            // Released without finish: deinit removes the temporary file.
        }
        XCTAssertEqual(contents(dest), Array("precious".utf8))
        XCTAssertEqual(strayFiles(in: directory, except: ["keep.raw"]), [])
        // No destination at all: still none.
        do {
            let w = try RawFileWriter(path: path("never.raw"))
            try w.writeMetadata(Self.metadata)
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("never.raw")))
        XCTAssertEqual(strayFiles(in: directory, except: ["keep.raw"]), [])
    }

    func testUnwritableOrMissingDirectoryGivesAClearError() throws {
        let missing = path("no such dir")
        let e1 = expectError({ $0 == .directoryMissing(directory: missing) }) { _ = try RawFileWriter(path: missing + "/x.raw") }
        XCTAssertEqual(e1?.description, "\(missing) does not exist or is not a directory. Create it first or choose another output path (-o PATH).")

        _ = expectError({ $0 == .destinationIsDirectory(path: self.directory) }) { _ = try RawFileWriter(path: self.directory) }

        // Root ignores permission bits, so make the directory unwritable with a
        // read-only mount; without root, with chmod.
        let dir: String
        let code: Int32
        if let ro = mountTmpfs("readonly", options: "size=64k", readOnly: true) {
            dir = ro; code = EROFS
        } else if geteuid() != 0 {
            dir = path("locked"); mkdir(dir, 0o555); code = EACCES
        } else {
            throw XCTSkip("cannot mount a read-only tmpfs (needs CAP_SYS_ADMIN) and chmod does not bind root")
        }
        let e2 = expectError({ $0 == .directoryNotWritable(directory: dir, errno: code) }) {
            _ = try RawFileWriter(path: dir + "/out.raw")
        }
        XCTAssertTrue(e2?.description.hasPrefix("cannot create a file in \(dir): ") ?? false)
        XCTAssertTrue(e2?.description.contains("-o PATH") ?? false)
    }

    func testDiskFullLeavesTheDestinationUntouched() throws {
        // 64 KiB of tmpfs: the old destination takes a page, the recording
        // cannot fit. Root only (mount(2) needs CAP_SYS_ADMIN).
        guard let dir = mountTmpfs("tiny", options: "size=64k") else {
            throw XCTSkip("disk-full test needs to mount a 64 KiB tmpfs (root / CAP_SYS_ADMIN): \(String(cString: strerror(errno)))")
        }
        let dest = dir + "/full.raw"
        _ = FileManager.default.createFile(atPath: dest, contents: Data("previous recording".utf8))
        let w = try RawFileWriter(path: dest, bufferCapacity: 8192)
        let error = expectError({ if case .diskFull(dest, _) = $0 { return true } else { return false } }) {
            try w.writeMetadata(Self.metadata)
            for i in 0..<100 { try w.writeSample(Self.sample(tgid: 1, time: UInt64(i), user: [UInt8](repeating: 7, count: 16_384))) }
            try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 1, endReason: "duration elapsed"))
        }
        guard case .diskFull(_, let written)? = error else { return }
        XCTAssertGreaterThan(written, 16_384)
        XCTAssertLessThanOrEqual(written, 64 * 1024)
        XCTAssertTrue(error!.description.contains("after writing \(written) bytes"))
        XCTAssertTrue(error!.description.contains("\(dest) was left untouched"))
        XCTAssertEqual(contents(dest), Array("previous recording".utf8))
        XCTAssertEqual(strayFiles(in: dir, except: ["full.raw"]), [], "the partial temporary file must be removed")
        // The writer stays failed; later calls repeat the error, they do not crash.
        _ = expectError({ $0 == error }) { try w.writeSample(Self.sample(tgid: 1, time: 1)) }
    }

    // MARK: Dump

    func dumpFile() throws -> RawFileReader {
        let file = path("dump.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        try w.writeProcess(RawProcess(pid: 1234, command: "server", executablePath: "/usr/bin/server"))
        try w.writeMappings(pid: 1234, generation: 1, mappings: Self.mappings(0x40_0000, path: "/usr/bin/server"))
        try w.writeSample(Self.sample(tgid: 1234, time: 1_000_500_000, ip: 0x40_1234,
                                      kernel: [0xffff_ffff_8100_1000, 0xffff_ffff_8100_2000],
                                      user: (0..<80).map { UInt8($0) },
                                      flags: [.userRegisters, .kernelMode, .viaFindVMA]))
        try w.writeSample(Self.sample(tgid: 1234, tid: 1240, time: 1_002_000_000, ip: 0x7ff0_0000_0010, comm: "wörker",
                                      flags: [.userRegisters, .userStackToEnd], kind: .offCPU))
        try w.writeSample(Self.sample(tgid: 1234, time: 1_003_250_000, ip: 0x10))
        try w.writeSample(Self.sample(tgid: 99, time: 999_000_000, comm: "kthread", flags: [.kernelMode]))
        try w.writeProcess(RawProcess(pid: 1234, command: "server", executablePath: "/usr/bin/server",
                                      exitTimeNanoseconds: 1_004_000_000))
        try w.finish(stats: RawStats(samplesLost: 1, counters: ["emitted": 5, "lost": 1],
                                     durationNanoseconds: 4_000_000, endReason: "target exited"))
        return try RawFileReader(path: file)
    }

    func testDumpOutput() throws {
        let r = try dumpFile()
        let text = RawDump.render(r).replacingOccurrences(of: directory, with: "DIR")
        let expected = """
        file              DIR/dump.raw (XXX bytes, raw format 1.2, written by sprof 0.1.0-test)
        host              build host, Linux 6.8.0-45-generic
        started           2024-05-01 12:00:00.123 UTC (monotonic 1000000000 ns)
        sampling          99 Hz, 32768 user-stack bytes requested
        target            pids 1234,5678
        bpf variants      ringbuf, find_vma, task_pt_regs
        extra             queue=64M, ünïcode key=välue
        duration          4.000 ms
        ended             target exited
        samples           4 in the file
        lost              !! 1 samples lost (20.00% of 5): the kernel buffer or the queue was full; the profile under-counts those moments
        counters          emitted=5 lost=1
        processes         1
              1234  server           /usr/bin/server  3 samples, exited at 4.000 ms
        mapping snapshots 1

             time ms     pid     tid  comm             cpu  kind     ip                  sp                       ustack kfr  flags                      mapping
               0.500    1234    1234  worker             3  cpu      0x0000000000401234  0x00007ffd00001000     80/32768   2  kernel,user-regs,find-vma  /usr/bin/server +0x1234
               2.000    1234    1240  wörker             3  off-cpu  0x00007ff000000010  0x00007ffd00001000      0/32768   0  user-regs,ustack-to-end    [anon] +0x10
               3.250    1234    1234  worker             3  cpu      0x0000000000000010  0x00007ffd00001000      0/32768   0  user-regs                  [unknown]
              -1.000      99      99  kthread            3  cpu      -                   -                       0/32768   0  kernel                     -

        """
        XCTAssertEqual(text.replacingOccurrences(of: "(\(r.fileSize) bytes", with: "(XXX bytes"), expected)
    }

    func testDumpVerboseLimitAndPid() throws {
        let r = try dumpFile()
        let text = RawDump.render(r, options: RawDump.Options(limit: 1, pid: 1234, verbose: true))
        let samples = text.components(separatedBy: "\n\n")[1]
        let expected = """
             time ms     pid     tid  comm             cpu  kind     ip                  sp                       ustack kfr  flags                      mapping
               0.500    1234    1234  worker             3  cpu      0x0000000000401234  0x00007ffd00001000     80/32768   2  kernel,user-regs,find-vma  /usr/bin/server +0x1234
            kernel    0xffffffff81001000 0xffffffff81002000
            ustack    sp+00 0x0706050403020100 0x0f0e0d0c0b0a0908 0x1716151413121110 0x1f1e1d1c1b1a1918
                      sp+20 0x2726252423222120 0x2f2e2d2c2b2a2928 0x3736353433323130 0x3f3e3d3c3b3a3938
            regs      bp 0x00007ffd00001080, stack end 0x00007ffd00021000
        ... 2 more samples not shown

        """
        XCTAssertEqual(samples, expected)
        XCTAssertTrue(text.contains("  pid     1234  generation 1, 4 mappings\n"), text)
        // Another pid, no limit.
        let other = RawDump.render(r, options: RawDump.Options(pid: 99))
        XCTAssertTrue(other.hasSuffix("kernel  -\n"), other)
        XCTAssertEqual(other.components(separatedBy: "\n\n")[1].split(separator: "\n").count, 2)
    }

    func testDumpOfUnwoundSamples() throws {
        let file = path("dump-unwound.raw")
        let w = try RawFileWriter(path: file)
        try w.writeMetadata(Self.metadata)
        try w.writeProcess(RawProcess(pid: 1234, command: "server", executablePath: "/usr/bin/server"))
        try w.writeMappings(pid: 1234, generation: 1, mappings: Self.mappings(0x40_0000, path: "/usr/bin/server"))
        // Complete: the ip, a return address, one at the very end of the text
        // (a call that never returns: shown in the mapping of the call), anon, unmapped.
        try Self.writeUnwound(w, Self.sample(tgid: 1234, time: 1_000_500_000, ip: 0x40_1234,
                                             kernel: [0xffff_ffff_8100_1000, 0xffff_ffff_8100_2000],
                                             user: [UInt8](repeating: 0, count: 4096),
                                             flags: [.userRegisters, .kernelMode]),
                              frames: [0x40_1234, 0x40_2000, 0x40_5000, 0x7ff0_0000_0010, 0x10], stop: 0)
        try Self.writeUnwound(w, Self.sample(tgid: 1234, tid: 1240, time: 1_002_000_000, ip: 0x40_1300, comm: "wörker",
                                             user: [UInt8](repeating: 0, count: 512), kind: .offCPU),
                              frames: [0x40_1300], stop: 4)
        try w.writeSample(Self.sample(tgid: 1234, time: 1_003_250_000, ip: 0x40_1234, user: (0..<16).map { UInt8($0) }))
        try w.finish(stats: RawStats(samplesLost: 0, durationNanoseconds: 4_000_000, endReason: "duration elapsed"))
        let r = try RawFileReader(path: file)

        let text = RawDump.render(r)
        XCTAssertTrue(text.contains("samples           3 in the file, 2 unwound at record time\n"), text)
        let expected = """
             time ms     pid     tid  comm             cpu  kind     ip                  sp                                        ustack kfr  flags             mapping
               0.500    1234    1234  worker             3  cpu      0x0000000000401234  0x00007ffd00001000           frames 5 (complete)   2  kernel,user-regs  /usr/bin/server +0x1234
               2.000    1234    1240  wörker             3  off-cpu  0x0000000000401300  0x00007ffd00001000  frames 1 (truncated, stop 4)   0  user-regs         /usr/bin/server +0x1300
               3.250    1234    1234  worker             3  cpu      0x0000000000401234  0x00007ffd00001000                      16/32768   0  user-regs         /usr/bin/server +0x1234

        """
        XCTAssertEqual(text.components(separatedBy: "\n\n")[1], expected)

        let verbose = RawDump.render(r, options: RawDump.Options(verbose: true)).components(separatedBy: "\n\n")[1]
        let expectedVerbose = """
             time ms     pid     tid  comm             cpu  kind     ip                  sp                                        ustack kfr  flags             mapping
               0.500    1234    1234  worker             3  cpu      0x0000000000401234  0x00007ffd00001000           frames 5 (complete)   2  kernel,user-regs  /usr/bin/server +0x1234
            kernel    0xffffffff81001000 0xffffffff81002000
            user      #0   0x0000000000401234  /usr/bin/server +0x1234
                      #1   0x0000000000402000  /usr/bin/server +0x2000
                      #2   0x0000000000405000  /usr/bin/server +0x5000
                      #3   0x00007ff000000010  [anon] +0x10
                      #4   0x0000000000000010  [unknown]
            regs      bp 0x00007ffd00001080, stack end 0x00007ffd00021000, unwound from 4096 user-stack bytes
               2.000    1234    1240  wörker             3  off-cpu  0x0000000000401300  0x00007ffd00001000  frames 1 (truncated, stop 4)   0  user-regs         /usr/bin/server +0x1300
            user      #0   0x0000000000401300  /usr/bin/server +0x1300
            regs      bp 0x00007ffd00001080, stack end 0x00007ffd00021000, off CPU 5000 ns, unwound from 512 user-stack bytes
               3.250    1234    1234  worker             3  cpu      0x0000000000401234  0x00007ffd00001000                      16/32768   0  user-regs         /usr/bin/server +0x1234
            ustack    sp+00 0x0706050403020100 0x0f0e0d0c0b0a0908
            regs      bp 0x00007ffd00001080, stack end 0x00007ffd00021000

        """
        XCTAssertEqual(verbose, expectedVerbose)
    }

    func testDumpOfATruncatedFileSaysSo() throws {
        let (bytes, ends, _) = try smallFile()
        let r = try RawFileReader(bytes: Array(bytes[..<(ends[4] + 20)]), name: "cut.raw")
        let text = RawDump.render(r)
        XCTAssertTrue(text.contains("lost              unknown (no stats record)\n"), text)
        XCTAssertTrue(text.contains("warning           the file ends inside a sample record at byte \(ends[4]) (12 of "), text)
        XCTAssertTrue(text.contains("everything before it is kept (2 samples)"), text)
    }

    func testFormattingHelpers() {
        XCTAssertEqual(RawDump.milliseconds(0), "0.000")
        XCTAssertEqual(RawDump.milliseconds(1_234_567_890), "1234.567")
        XCTAssertEqual(RawDump.milliseconds(-12_000), "-0.012")
        XCTAssertEqual(RawDump.utcTimestamp(0), "1970-01-01 00:00:00.000 UTC")
        XCTAssertEqual(RawDump.utcTimestamp(951_782_400_000_000_000), "2000-02-29 00:00:00.000 UTC")
        XCTAssertEqual(RawDump.utcTimestamp(4_102_444_799_999_000_000), "2099-12-31 23:59:59.999 UTC")
        XCTAssertEqual(RawDump.flagWords([]), "-")
        XCTAssertEqual(RawDump.flagWords(SampleFlags(rawValue: 0x10001)), "kernel,0x10000")
        XCTAssertEqual(RawDump.percent(1, of: 3), "33.33%")
    }
}
