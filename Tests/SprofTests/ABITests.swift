import CSprof
import SprofBase
import XCTest
@testable import SprofCapture

/// The sample layout is defined once, in bpf/include/sprof_abi.h. The BPF
/// compiler checks it with _Static_assert; these tests check that the Swift
/// decoder's offsets equal the host C compiler's offsetof(), and that the
/// committed BPF objects are what their sources build to.
final class ABITests: XCTestCase {
    func testSwiftDecoderOffsetsMatchC() {
        let pairs: [(sprof_sample_field, Int, String)] = [
            (SPROF_FIELD_KIND, SampleLayout.kind, "kind"),
            (SPROF_FIELD_ABI_VERSION, SampleLayout.abiVersion, "abi_version"),
            (SPROF_FIELD_FLAGS, SampleLayout.flags, "flags"),
            (SPROF_FIELD_TGID, SampleLayout.tgid, "tgid"),
            (SPROF_FIELD_TID, SampleLayout.tid, "tid"),
            (SPROF_FIELD_TIME_NS, SampleLayout.timeNs, "time_ns"),
            (SPROF_FIELD_CPU, SampleLayout.cpu, "cpu"),
            (SPROF_FIELD_KSTACK_LEN, SampleLayout.kstackLen, "kstack_len"),
            (SPROF_FIELD_IP, SampleLayout.ip, "ip"),
            (SPROF_FIELD_SP, SampleLayout.sp, "sp"),
            (SPROF_FIELD_BP, SampleLayout.bp, "bp"),
            (SPROF_FIELD_WEIGHT, SampleLayout.weight, "weight"),
            (SPROF_FIELD_STACK_END, SampleLayout.stackEnd, "stack_end"),
            (SPROF_FIELD_USTACK_LEN, SampleLayout.ustackLen, "ustack_len"),
            (SPROF_FIELD_USTACK_REQ, SampleLayout.ustackReq, "ustack_req"),
            (SPROF_FIELD_COMM, SampleLayout.comm, "comm"),
            (SPROF_FIELD_KSTACK, SampleLayout.kstack, "kstack"),
            (SPROF_FIELD_USTACK, SampleLayout.ustack, "ustack"),
        ]
        for (field, swift, name) in pairs {
            XCTAssertEqual(sprof_sample_offset(field), swift, "offset of \(name)")
        }
        XCTAssertEqual(sprof_sample_offset(SPROF_FIELD_SIZE), SampleLayout.ustack + SampleLayout.maxUserStack)
        XCTAssertEqual(MemoryLayout<sprof_config>.size, 48)
        XCTAssertEqual(SampleLayout.maxKernelFrames * 8 + SampleLayout.kstack, SampleLayout.ustack)
    }

    /// A record laid out by hand with the C offsets decodes field by field.
    func testDecodeHandBuiltRecord() throws {
        var rec = [UInt8](repeating: 0, count: SampleLayout.ustack + 24)
        func put<T: FixedWidthInteger>(_ v: T, _ field: sprof_sample_field) {
            withUnsafeBytes(of: v.littleEndian) { b in for (i, x) in b.enumerated() { rec[sprof_sample_offset(field) + i] = x } }
        }
        put(UInt16(SPROF_KIND_CPU.rawValue), SPROF_FIELD_KIND)
        put(UInt16(SPROF_ABI_VERSION), SPROF_FIELD_ABI_VERSION)
        put(UInt32(SPROF_F_USER_REGS.rawValue | SPROF_F_KERNEL_MODE.rawValue), SPROF_FIELD_FLAGS)
        put(UInt32(4242), SPROF_FIELD_TGID)
        put(UInt32(4243), SPROF_FIELD_TID)
        put(UInt64(123_456_789), SPROF_FIELD_TIME_NS)
        put(UInt32(1), SPROF_FIELD_CPU)
        put(UInt32(16), SPROF_FIELD_KSTACK_LEN)
        put(UInt64(0x401000), SPROF_FIELD_IP)
        put(UInt64(0x7ffe_0000_1000), SPROF_FIELD_SP)
        put(UInt64(0x7ffe_0000_2000), SPROF_FIELD_BP)
        put(UInt64(0x7ffe_0000_9000), SPROF_FIELD_STACK_END)
        put(UInt32(24), SPROF_FIELD_USTACK_LEN)
        put(UInt32(32768), SPROF_FIELD_USTACK_REQ)
        for (i, c) in "chain".utf8.enumerated() { rec[sprof_sample_offset(SPROF_FIELD_COMM) + i] = c }
        let k = sprof_sample_offset(SPROF_FIELD_KSTACK)
        withUnsafeBytes(of: UInt64(0xffff_ffff_8100_0000).littleEndian) { for (i, x) in $0.enumerated() { rec[k + i] = x } }
        withUnsafeBytes(of: UInt64(0xffff_ffff_8100_0010).littleEndian) { for (i, x) in $0.enumerated() { rec[k + 8 + i] = x } }
        for i in 0..<24 { rec[SampleLayout.ustack + i] = UInt8(i + 1) }

        let s = try rec.withUnsafeBytes { try RawSample(record: $0) }
        XCTAssertEqual(s.kind, .cpu)
        XCTAssertEqual(s.flags, [.userRegisters, .kernelMode])
        XCTAssertEqual(s.tgid, 4242)
        XCTAssertEqual(s.tid, 4243)
        XCTAssertEqual(s.timeNanoseconds, 123_456_789)
        XCTAssertEqual(s.cpu, 1)
        XCTAssertEqual(s.comm.description, "chain")
        XCTAssertEqual(s.ip, ProcessAddress(0x401000))
        XCTAssertEqual(s.sp, ProcessAddress(0x7ffe_0000_1000))
        XCTAssertEqual(s.bp, ProcessAddress(0x7ffe_0000_2000))
        XCTAssertEqual(s.stackEnd, ProcessAddress(0x7ffe_0000_9000))
        XCTAssertEqual(s.userStackRequested, 32768)
        XCTAssertEqual(s.kernelStack, [KernelAddress(0xffff_ffff_8100_0000), KernelAddress(0xffff_ffff_8100_0010)])
        XCTAssertEqual(Array(s.userStack), (1...24).map { UInt8($0) })
    }

    func testDecodeRejectsBadRecords() {
        XCTAssertThrowsError(try [UInt8](repeating: 0, count: 100).withUnsafeBytes { try RawSample(record: $0) }) {
            XCTAssertEqual($0 as? CaptureError, .sampleTooShort(bytes: 100))
        }
        var rec = [UInt8](repeating: 0, count: SampleLayout.ustack)
        rec[SampleLayout.kind] = 1
        rec[SampleLayout.abiVersion] = 99
        XCTAssertThrowsError(try rec.withUnsafeBytes { try RawSample(record: $0) }) {
            XCTAssertEqual($0 as? CaptureError, .sampleABIMismatch(found: 99))
        }
        rec[SampleLayout.abiVersion] = UInt8(SPROF_ABI_VERSION)
        rec[SampleLayout.ustackLen] = 200  // claims more bytes than the record has
        XCTAssertThrowsError(try rec.withUnsafeBytes { try RawSample(record: $0) })
    }

    /// bpf/build.sh --check rebuilds both objects with the pinned clang and
    /// compares them byte for byte with the committed ones and with the bytes
    /// embedded in the binary.
    func testCommittedBPFObjectsMatchTheirSources() throws {
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        guard FileManager.default.isExecutableFile(atPath: "/opt/swift/usr/bin/clang") else {
            throw XCTSkip("the pinned BPF compiler /opt/swift/usr/bin/clang is not installed")
        }
        let p = Process()
        p.executableURL = root.appendingPathComponent("bpf/build.sh")
        p.arguments = ["--check"]
        let err = Pipe()
        p.standardError = err
        try p.run()
        p.waitUntilExit()
        let text = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        XCTAssertEqual(p.terminationStatus, 0, "bpf/build.sh --check: \(text)")

        let committed = try Data(contentsOf: root.appendingPathComponent("bpf/sprof.bpf.o"))
        var len = 0
        let embedded = Data(bytes: sprof_sprof_bpf_object(&len), count: len)
        XCTAssertEqual(committed, embedded, "the binary embeds a different sprof.bpf.o than bpf/ has")
        let legacy = try Data(contentsOf: root.appendingPathComponent("bpf/sprof_legacy.bpf.o"))
        XCTAssertEqual(legacy, Data(bytes: sprof_sprof_legacy_bpf_object(&len), count: len), "the binary embeds a different sprof_legacy.bpf.o")
        let probe = try Data(contentsOf: root.appendingPathComponent("bpf/probe.bpf.o"))
        let embeddedProbe = Data(bytes: sprof_probe_bpf_object(&len), count: len)
        XCTAssertEqual(probe, embeddedProbe)
    }
}
