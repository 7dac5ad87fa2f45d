import XCTest
@testable import SprofCapture

/// The one-line meanings of verifier logs, on the messages real kernels print
/// (kernel/bpf/verifier.c) for the failures sprof's design avoids.
final class VerifierDiagnosisTests: XCTestCase {
    func log(_ body: [String]) -> [String] {
        ["libbpf: prog 'sprof_cpu_sample': BPF program load failed: Permission denied",
         "libbpf: prog 'sprof_cpu_sample': -- BEGIN PROG LOAD LOG --"] + body
            + ["-- END PROG LOAD LOG --", "libbpf: failed to load object 'sprof'"]
    }

    func testKnownMessages() {
        let cases: [([String], Int32, String)] = [
            (["BPF program is too large. Processed 1000001 insn"], E2BIG, "instruction limit"),
            (["36: (85) call bpf_find_vma#180", "unknown func bpf_find_vma#180"], EINVAL, "helper this kernel does not have"),
            (["R5 min value is negative, either use unsigned or 'var &= const'"], EACCES, "negative"),
            (["Arg#0 type PTR in dwarf_cfi_eval() is not supported yet."], EINVAL, "does not support"),
            (["invalid access to map value, value_size=66648 off=66640 size=4096"], EACCES, "leave its buffer"),
            ([], EPERM, "CAP_BPF"),
            ([], ENOMEM, "ulimit -l"),
            (["something new"], EINVAL, "log below"),
        ]
        for (body, errno, needle) in cases {
            let d = diagnoseVerifierLog(log(body), errno: errno, privileged: false)
            XCTAssertTrue(d.contains(needle), "\(body) -> \(d)")
        }
        // EPERM with every capability (root): not a missing privilege but what forbids it anyway.
        let d = diagnoseVerifierLog([], errno: EPERM, privileged: true)
        XCTAssertTrue(d.contains("lockdown") && d.contains("fentry") && !d.contains("CAP_BPF"), d)
    }

    func testTailIsTheLogBody() {
        let lines = log((1...30).map { "\($0): insn" })
        let tail = verifierLogTail(lines, count: 3)
        XCTAssertEqual(tail, ["28: insn", "29: insn", "30: insn"])
        let e = CaptureError.verifierRejected(program: "sprof_cpu_sample", errno: EACCES, logTail: tail,
                                              diagnosis: diagnoseVerifierLog(lines, errno: EACCES))
        XCTAssertTrue(e.description.hasPrefix("the kernel refused BPF program 'sprof_cpu_sample' (EACCES: "), e.description)
        XCTAssertTrue(e.description.contains("30: insn"))
    }
}
