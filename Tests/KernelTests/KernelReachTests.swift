import Foundation
import XCTest

/// The kernel reach, as a test: `Tests/kernels/run` boots Debian's kernels in
/// QEMU (TCG) with this build's `sprof` and two fixtures in an initramfs, runs
/// `sprof doctor`, an on-CPU and an off-CPU recording and `sprof report`
/// inside, and checks the chains, the verifier budget and the attach point
/// (the kprobe on finish_task_switch wherever the kernel has kprobes).
///
/// Which kernels: `SPROF_KERNELS` (comma list of 5.10, 6.1, 6.12, 7), by
/// default all four: with the debug build each takes 45–55 s (boot ~7 s
/// under TCG, then doctor, two recordings and two reports), so the matrix
/// fits in about 4 minutes once the kernels are cached (first fetch ~30 s).
/// 5.10 has neither bpf_find_vma nor bpf_task_pt_regs: the fallbacks run
/// there. Kernels are fetched once into `SPROF_KERNEL_CACHE`
/// (~/.cache/sprof-kernels).
final class KernelReachTests: XCTestCase {
    func testSprofRunsOnDebianKernelsFrom5_10To7() throws {
        try requireKernelAccess()
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("Tests/kernels/run").path
        let sprof = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
        let kernels = ProcessInfo.processInfo.environment["SPROF_KERNELS"] ?? "5.10,6.1,6.12,7"
        let json = tempPath("kernels.json")
        defer { unlink(json) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // The guests' consoles stay in the temporary directory for a failure's post-mortem.
        let consoles = NSTemporaryDirectory() + "sprof-kernel-consoles-\(getpid())"
        p.arguments = ["python3", script, "--kernels", kernels, "--sprof", sprof, "--json", json, "--keep-console", consoles]
        let out = Pipe()
        p.standardOutput = out
        try p.run()
        let table = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        print(table)
        if p.terminationStatus == 77 {
            // Nothing could run (no QEMU to install, no archive to fetch from): the script named why.
            throw skipOrFailInCI("no kernel could be booted here: \(table)")
        }
        XCTAssertEqual(p.terminationStatus, 0, "\(table)\nconsoles: \(consoles)")
        let rows = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: json))) as? [[String: Any]])
        XCTAssertEqual(rows.count, kernels.split(separator: ",").count)
        for row in rows {
            let name = row["kernel"] as? String ?? "?"
            if let why = row["skipped"] as? String { throw skipOrFailInCI("kernel \(name) skipped: \(why)") }
            if let first = row["retried"] as? String { print("warning: kernel \(name) passed on its second boot; the first: \(first)") }
            XCTAssertEqual((row["problems"] as? [String]) ?? ["?"], [], "kernel \(name)")
            XCTAssertEqual(row["sampling"] as? String, "loads", name)
            XCTAssertLessThanOrEqual(row["max_instructions"] as? Int ?? .max, 4000, name)
            XCTAssertGreaterThanOrEqual(row["cpu_exact"] as? Double ?? 0, 95, name)
            // Debian's kernels have kprobes: the preferred off-CPU path is the one used.
            XCTAssertEqual(row["offcpu_attach"] as? String, "kprobe on finish_task_switch", name)
            if name == "5.10" {
                let variant = row["variant"] as? String ?? ""
                XCTAssertTrue(variant.contains("chunked") && variant.contains("saved-regs"),
                              "5.10 has no bpf_find_vma nor bpf_task_pt_regs: the fallbacks run there (\(variant))")
            }
        }
    }
}
