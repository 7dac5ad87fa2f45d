import Foundation
import XCTest
@testable import SprofCapture

/// What `sprof agent` keeps on each kernel generation and with each
/// bounding set it may be started with (PrivilegePlan.agent), and the
/// status-file parsing the drop is checked with. The drop itself, on a
/// real agent's every thread, is AgentPrivilegeTests (a kernel test).
final class PrivilegePlanTests: XCTestCase {
    func names(_ p: PrivilegePlan) -> [String] { p.kept.map(\.0.name) }

    func testKeptSetPerKernel() {
        let all = CapabilitySet.all(lastCapability: 40)
        // 5.9+: the set the README documents, in the order the log says it.
        let now = PrivilegePlan.agent(lastCapability: 40, permitted: all)
        XCTAssertEqual(names(now), ["cap_bpf", "cap_perfmon", "cap_sys_ptrace", "cap_dac_read_search", "cap_checkpoint_restore", "cap_syslog"])
        XCTAssertEqual(now.notes, [])
        XCTAssertFalse(now.set.contains(.sysAdmin))
        XCTAssertFalse(now.set.contains(.dacOverride))
        XCTAssertFalse(now.set.contains(.netBindService))
        // A kernel newer than this list (cap_last_cap 41+) keeps the same.
        XCTAssertEqual(PrivilegePlan.agent(lastCapability: 43, permitted: .all(lastCapability: 43)).set, now.set)

        // 5.8: CAP_BPF and CAP_PERFMON, no CAP_CHECKPOINT_RESTORE: map_files needs CAP_SYS_ADMIN.
        let five8 = PrivilegePlan.agent(lastCapability: 39, permitted: .all(lastCapability: 39))
        XCTAssertEqual(names(five8), ["cap_bpf", "cap_perfmon", "cap_sys_admin", "cap_sys_ptrace", "cap_dac_read_search", "cap_syslog"])
        XCTAssertEqual(five8.notes.count, 1)
        XCTAssertTrue(five8.notes[0].contains("cap_sys_admin is kept for opening /proc/PID/map_files"), five8.notes[0])

        // Before 5.8: CAP_SYS_ADMIN for loading and map_files.
        let old = PrivilegePlan.agent(lastCapability: 37, permitted: .all(lastCapability: 37))
        XCTAssertEqual(names(old), ["cap_sys_admin", "cap_sys_ptrace", "cap_dac_read_search", "cap_syslog"])
        XCTAssertTrue(old.notes[0].contains("no CAP_BPF/CAP_PERFMON before Linux 5.8"), old.notes[0])
        XCTAssertTrue(old.notes[0].contains("map_files"), old.notes[0])
    }

    /// Started by a service manager with a narrower bounding set: what is
    /// not held cannot be kept, and the log says what that costs.
    func testNotHeldIsNamed() {
        var permitted = CapabilitySet.all(lastCapability: 40)
        permitted.remove(.syslog)
        permitted.remove(.checkpointRestore)
        let p = PrivilegePlan.agent(lastCapability: 40, permitted: permitted)
        XCTAssertEqual(names(p), ["cap_bpf", "cap_perfmon", "cap_sys_ptrace", "cap_dac_read_search"])
        XCTAssertEqual(p.notes.count, 2, "\(p.notes)")
        XCTAssertTrue(p.notes.contains { $0.hasPrefix("cap_syslog is not held") && $0.contains("kernel frames are unnamed") }, "\(p.notes)")
        XCTAssertTrue(p.notes.contains { $0.hasPrefix("cap_checkpoint_restore is not held") && $0.contains("map_files") }, "\(p.notes)")
    }

    func testCapabilityNamesAndSets() {
        XCTAssertEqual(Capability.bpf.name, "cap_bpf")
        XCTAssertEqual(Capability(name: "CAP_SYS_PTRACE"), .sysPtrace)
        XCTAssertEqual(Capability(rawValue: 41).name, "cap_41")
        XCTAssertNil(Capability(name: "cap_nothing"))
        // include/uapi/linux/capability.h numbers.
        XCTAssertEqual([Capability.dacReadSearch, .setpcap, .sysPtrace, .sysAdmin, .syslog, .perfmon, .bpf, .checkpointRestore].map(\.rawValue),
                       [2, 8, 19, 21, 34, 38, 39, 40])
        XCTAssertEqual(CapabilitySet.all(lastCapability: 40).rawValue, 0x1ff_ffff_ffff)
        XCTAssertEqual(CapabilitySet([.bpf, .dacReadSearch]).description, "cap_dac_read_search, cap_bpf")
        XCTAssertEqual(CapabilitySet(rawValue: 0).description, "none")
    }

    /// A status file as fs/proc/array.c writes it (task_cap, proc_pid_status).
    func testThreadStatusParsing() throws {
        let status = """
            Name:\tsprof-reader
            Umask:\t0022
            State:\tS (sleeping)
            Tgid:\t100
            Pid:\t101
            NoNewPrivs:\t1
            CapInh:\t0000000000000000
            CapPrm:\t000001c400080004
            CapEff:\t000001c400080004
            CapBnd:\t000001c400080004
            CapAmb:\t0000000000000000
            Seccomp:\t0
            """
        let t = try XCTUnwrap(ThreadCapabilities(tid: 101, status: status))
        XCTAssertEqual(t.name, "sprof-reader")
        XCTAssertEqual(t.effective, CapabilitySet([.bpf, .perfmon, .sysPtrace, .dacReadSearch, .checkpointRestore, .syslog]))
        XCTAssertEqual(t.permitted, t.effective)
        XCTAssertEqual(t.bounding, t.effective)
        XCTAssertTrue(t.inheritable.isEmpty && t.ambient.isEmpty)
        XCTAssertTrue(t.noNewPrivileges)
        XCTAssertNil(ThreadCapabilities(tid: 1, status: "Name:\tx\nCapEff:\tzz\n"))
        // This test's own threads are read the same way.
        XCTAssertFalse(ThreadCapabilities.of(pid: getpid()).isEmpty)
    }
}
