import Foundation
import XCTest
@testable import SprofCapture
#if canImport(Glibc)
import Glibc
#endif

/// How the recorder's writer turns noticed exits into process records
/// (``ProcessRecords``), and how /proc tells an exited process. No BPF.
final class ProcessExitTests: XCTestCase {
    let live = RawProcess(pid: 42, command: "server", executablePath: "/usr/bin/server")

    func testExitBecomesASecondCompleteRecord() {
        var records = ProcessRecords()
        XCTAssertFalse(records.hasRecord(pid: 42))
        XCTAssertEqual(records.first(live), live)
        XCTAssertTrue(records.hasRecord(pid: 42))
        XCTAssertEqual(records.pidsNotKnownToHaveExited, [42])
        // The exit repeats what the first record said: /proc no longer can.
        let exit = records.exited(pid: 42, at: 5_000)
        XCTAssertEqual(exit, RawProcess(pid: 42, command: "server", executablePath: "/usr/bin/server",
                                        exited: true, exitTimeNanoseconds: 5_000))
        XCTAssertEqual(records.pidsNotKnownToHaveExited, [])
        // Nothing new after that: neither a second notice nor the end-of-recording check.
        XCTAssertNil(records.exited(pid: 42, at: 6_000))
        XCTAssertNil(records.exited(pid: 42, at: nil))
    }

    func testExitNoticedBeforeTheFirstSampleGoesIntoTheFirstRecord() {
        var records = ProcessRecords()
        // Samples can still sit in the kernel buffer when the exit is seen.
        XCTAssertNil(records.exited(pid: 42, at: 7_000))
        XCTAssertFalse(records.hasRecord(pid: 42))
        XCTAssertNil(records.exited(pid: 42, at: 8_000), "the first notice's time is kept")
        let first = records.first(live)
        XCTAssertEqual(first.exitTimeNanoseconds, 7_000)
        XCTAssertTrue(first.exited)
        XCTAssertEqual(first.executablePath, "/usr/bin/server")
        XCTAssertNil(records.exited(pid: 42, at: 9_000))
    }

    func testExitFoundAtTheEndHasNoTime() {
        var records = ProcessRecords()
        _ = records.first(live)
        _ = records.first(RawProcess(pid: 7, command: "gone", executablePath: "", exited: true))
        XCTAssertEqual(records.pidsNotKnownToHaveExited, [42], "7's first record already says it exited")
        let exit = records.exited(pid: 42, at: nil)
        XCTAssertEqual(exit?.exited, true)
        XCTAssertNil(exit?.exitTimeNanoseconds)
        // A first record that said "exited" without a time still gains one.
        XCTAssertEqual(records.exited(pid: 7, at: 3_000)?.exitTimeNanoseconds, 3_000)
        XCTAssertNil(records.exited(pid: 7, at: nil))
    }

    func testProcSaysExited() throws {
        XCTAssertFalse(procSaysExited(pid: getpid()))
        XCTAssertTrue(procSaysExited(pid: Int32.max), "no such process")
        // A zombie: exited, not yet reaped. waitid(WNOWAIT) waits for the
        // exit and leaves the child unreaped.
        var pid: pid_t = 0
        let argv: [UnsafeMutablePointer<CChar>?] = [strdup("/bin/true"), nil]
        defer { for p in argv { free(p) } }
        guard posix_spawn(&pid, "/bin/true", nil, nil, argv, environ) == 0 else {
            throw XCTSkip("cannot spawn /bin/true")
        }
        var info = siginfo_t()
        XCTAssertEqual(waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT), 0)
        XCTAssertEqual(KernelInfo.readFile("/proc/\(pid)/stat")?.contains(") Z "), true)
        XCTAssertTrue(procSaysExited(pid: pid), "a zombie has exited")
        var status: Int32 = 0
        XCTAssertEqual(waitpid(pid, &status, 0), pid)
        XCTAssertTrue(procSaysExited(pid: pid), "reaped")
    }
}
