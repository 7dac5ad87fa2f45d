import Foundation
import XCTest
@testable import SprofAgent

/// Labels from cgroup paths: the layouts container managers and systemd
/// use (as their documentation and source name them), and a real cgroup
/// made by the test with a real process moved into it.
final class CgroupLabelsTests: XCTestCase {
    let id = String(repeating: "0123456789abcdef", count: 4)

    func testLayouts() {
        let cases: [(String, String?, String?)] = [
            // Docker, cgroupfs driver and systemd driver.
            ("/docker/\(id)", id, nil),
            ("/system.slice/docker-\(id).scope", id, "docker-\(id).scope"),
            // Kubernetes: containerd (systemd and cgroupfs drivers), CRI-O.
            ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-\(id).scope",
             id, "cri-containerd-\(id).scope"),
            ("/kubepods/besteffort/pod0a1b2c3d-1111-2222-3333-444455556666/\(id)", id, nil),
            ("/kubepods.slice/kubepods-pod1.slice/crio-\(id).scope", id, "crio-\(id).scope"),
            // Podman.
            ("/machine.slice/libpod-\(id).scope/container", id, "libpod-\(id).scope"),
            // systemd services, system and user; a login session scope.
            ("/system.slice/nginx.service", nil, "nginx.service"),
            ("/user.slice/user-1000.slice/user@1000.service/app.slice/app-gnome-firefox-1234.scope", nil,
             "user@1000.service"),
            ("/user.slice/user-1000.slice/user@1000.service/app.slice/syncthing.service", nil, "syncthing.service"),
            ("/user.slice/user-1000.slice/session-3.scope", nil, "session-3.scope"),
            // Neither.
            ("/", nil, nil),
            ("/process_api/5551d6c6072702445ae31b3f93fca330", nil, nil),
            // 64 characters, not all hexadecimal: not an ID.
            ("/docker/\(String(repeating: "g", count: 64))", nil, nil),
        ]
        for (path, container, unit) in cases {
            let l = CgroupLabels(path: path)
            XCTAssertEqual(l.path, path, path)
            XCTAssertEqual(l.containerID, container, path)
            XCTAssertEqual(l.systemdUnit, unit, path)
        }
    }

    /// The unified line wins; on a v1 host the systemd hierarchy; else the
    /// first controller that is not at the root (this VM's own layout:
    /// only `memory` is placed).
    func testProcCgroupPath() {
        XCTAssertEqual(CgroupLabels.path(fromProcCgroup: "0::/system.slice/ssh.service\n"), "/system.slice/ssh.service")
        XCTAssertEqual(CgroupLabels.path(fromProcCgroup: """
            12:pids:/system.slice/cron.service
            1:name=systemd:/system.slice/cron.service
            0::/
            """), "/system.slice/cron.service")
        XCTAssertEqual(CgroupLabels.path(fromProcCgroup: """
            9:name=systemd:/
            4:memory:/process_api/5551d6c6072702445ae31b3f93fca330
            0::/
            """), "/process_api/5551d6c6072702445ae31b3f93fca330")
        XCTAssertEqual(CgroupLabels.path(fromProcCgroup: "0::/a:b/c.service\n"), "/a:b/c.service", "a path may hold ':'")
        XCTAssertEqual(CgroupLabels.path(fromProcCgroup: ""), "/")
        XCTAssertEqual(CgroupLabels.path(fromProcCgroup: "garbage\n"), "/")
    }

    /// A real cgroup v2 directory named as Docker's systemd driver names a
    /// container's, a real process moved into it: its labels from /proc.
    func testRealCgroup() throws {
        let unified = ["/sys/fs/cgroup/unified", "/sys/fs/cgroup"].first {
            FileManager.default.fileExists(atPath: $0 + "/cgroup.procs") && FileManager.default.fileExists(atPath: $0 + "/cgroup.controllers")
        }
        guard let unified, geteuid() == 0 else {
            throw skipOrFailInCI("needs root and a cgroup v2 hierarchy (/sys/fs/cgroup/unified or /sys/fs/cgroup)")
        }
        let parent = unified + "/sprof-test-\(getpid()).slice"
        let dir = parent + "/docker-\(id).scope"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let sleeper = Process()
        sleeper.executableURL = URL(fileURLWithPath: "/bin/sleep")
        sleeper.arguments = ["30"]
        try sleeper.run()
        defer {
            sleeper.terminate()
            sleeper.waitUntilExit()
            // A cgroup can be removed once it has no process.
            rmdir(dir)
            rmdir(parent)
        }
        try "\(sleeper.processIdentifier)\n".write(toFile: dir + "/cgroup.procs", atomically: false, encoding: .utf8)
        let relative = String(dir.dropFirst(unified.count))
        let labels = try XCTUnwrap(CgroupLabels.of(pid: sleeper.processIdentifier))
        XCTAssertEqual(labels.path, relative)
        XCTAssertEqual(labels.containerID, id)
        XCTAssertEqual(labels.systemdUnit, "docker-\(id).scope")
        XCTAssertNil(CgroupLabels.of(pid: -1), "no such process")
    }
}

/// The agent's self-measurement against the kernel's own accounting, and the
/// rate controller's arithmetic.
final class AgentBudgetTests: XCTestCase {
    /// A thread that burns ~0.4 s of CPU shows up in /proc/self/stat (ticks
    /// of 10 ms), and RSS grows by a 64 MiB buffer that is touched.
    func testSelfUsageFollowsTheKernel() throws {
        let before = try XCTUnwrap(SelfUsage.current())
        var x: UInt64 = 1
        let start = Date()
        while Date().timeIntervalSince(start) < 0.4 { for _ in 0..<10_000 { x = x &* 6364136223846793005 &+ 1 } }
        XCTAssertNotEqual(x, 0)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        for i in stride(from: 0, to: buffer.count, by: 4096) { buffer[i] = 1 }
        let after = try XCTUnwrap(SelfUsage.current())
        XCTAssertGreaterThan(after.cpuSeconds - before.cpuSeconds, 0.2, "0.4 s of spinning (less on a busy machine)")
        XCTAssertLessThan(after.cpuSeconds - before.cpuSeconds, 5)
        XCTAssertGreaterThan(after.rssBytes - before.rssBytes, 48 << 20)
    }

    func testRateController() {
        var c = RateController(configuredHz: 19, budget: 0.01, minimumHz: 2)
        XCTAssertEqual(c.next(used: 0.005), 19, "within budget: unchanged")
        XCTAssertFalse(c.throttled)
        XCTAssertEqual(c.next(used: 0.02), 9, "twice the budget: half the rate, rounded down")
        XCTAssertTrue(c.throttled)
        XCTAssertEqual(c.next(used: 0.5), 4, "far over: halved (at most, per window)")
        XCTAssertEqual(c.next(used: 0.5), 2, "then the minimum")
        XCTAssertEqual(c.next(used: 0.5), 2)
        XCTAssertEqual(c.next(used: 0.007), 2, "between half and the whole budget: held")
        XCTAssertEqual(c.next(used: 0.001), 3, "well under: up by at least one")
        var rates: [Int] = []
        for _ in 0..<20 { rates.append(c.next(used: 0.001)) }
        XCTAssertEqual(rates.last, 19, "back to the configured rate")
        XCTAssertTrue(zip(rates, rates.dropFirst()).allSatisfy { $0 <= $1 && $1 <= max($0 + 1, $0 * 5 / 4) }, "by a quarter at most: \(rates)")
        XCTAssertFalse(c.throttled)
        var d = RateController(configuredHz: 99, budget: 0.01)
        XCTAssertEqual(d.next(used: 0.0101), 98, "just over: down by at least one")
        XCTAssertEqual(d.next(used: .nan), 98, "no measurement: unchanged")
        var off = RateController(configuredHz: 99, budget: 0)
        XCTAssertEqual(off.next(used: 5), 99, "budget 0: no budget")
    }
}
