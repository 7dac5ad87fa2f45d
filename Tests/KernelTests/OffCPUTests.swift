import Foundation
import XCTest
@testable import SprofCapture

/// `sprof record --off-cpu` against real waits: a fixture (Tests/Fixtures/offcpu.c,
/// no frame pointers) waits in known call chains and measures its own wait time
/// with CLOCK_MONOTONIC; the recorded off-CPU time of each chain must match it.
/// The real BPF programs, the real scheduler, the CLI as users run it.
final class OffCPUTests: XCTestCase {
    var sprof: String {
        URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("sprof").path
    }

    struct Run {
        var stdout: String
        var stderr: String
        var status: Int32
        /// key=value lines the fixture printed (through sprof's stdout).
        func value(_ key: String) -> String? {
            stdout.split(separator: "\n").last { $0.hasPrefix(key + "=") }.map { String($0.dropFirst(key.count + 1)) }
        }
    }

    func run(_ args: [String], env: [String: String] = [:]) throws -> Run {
        let r = try runProcess(sprof, args, env: env)
        return Run(stdout: r.stdout, stderr: r.stderr, status: r.status)
    }

    /// Folded stacks of `value` (frames root → leaf after the process name, value).
    func folded(_ profile: String, value: String, extra: [String] = []) throws -> [(frames: [String], value: Int64)] {
        let r = try run(["report", profile, "--folded", "--value", value] + extra)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout.split(separator: "\n").compactMap { line in
            guard let space = line.lastIndex(of: " "), let n = Int64(line[line.index(after: space)...]) else { return nil }
            return (Array(line[..<space].split(separator: ";").dropFirst().map(String.init)), n)
        }
    }

    func contains(_ frames: [String], _ chain: [String]) -> Bool {
        guard chain.count <= frames.count else { return false }
        for i in 0...(frames.count - chain.count) where Array(frames[i..<(i + chain.count)]) == chain { return true }
        return false
    }

    /// `status`: what sprof exits with, the command's own status (143 when
    /// `-d` ended the recording and sprof stopped the command with SIGTERM).
    func record(_ fixtureArgs: [String], options: [String] = [], env: [String: String] = [:],
                status: Int32 = 0) throws -> (profile: String, run: Run) {
        try requireKernelAccess()
        let bin = try Fixtures.build("offcpu")
        let out = tempPath("offcpu.pb.gz")
        let r = try run(["record", "--off-cpu", "-o", out] + options + ["--", bin] + fixtureArgs, env: env)
        XCTAssertEqual(r.status, status, r.stderr)
        return (out, r)
    }

    /// A thread sleeping 20 ms at a time in sleeper_main → wait_outer →
    /// wait_middle → do_sleep → nanosleep: its recorded off-CPU time is within
    /// ±10% of what it measured, under a blocked `[off-cpu]` root, with the
    /// kernel chain through the sleep system call; go tool pprof reads the
    /// same total from the offcpu sample type.
    func testSleepingChainMatchesTheTimeTheThreadMeasured() throws {
        let (profile, r) = try record(["sleep", "3", "20"])
        defer { unlink(profile) }
        let truth = try XCTUnwrap(r.value("waited_ns").flatMap(Int64.init), r.stdout) - (r.value("waited_cpu_ns").flatMap(Int64.init) ?? 0)
        XCTAssertTrue(r.stderr.contains("off-CPU via tp_btf/sched_switch tracepoint"), r.stderr)
        let stacks = try folded(profile, value: "offcpu")
        let chain = ["sleeper_main", "wait_outer", "wait_middle", "do_sleep"]
        let mine = stacks.filter { contains($0.frames, chain) }
        let total = mine.reduce(0) { $0 + $1.value }
        XCTAssertEqual(Double(total), Double(truth), accuracy: Double(truth) * 0.10,
                       "recorded \(total) ns for the chain, the thread measured \(truth) ns; stacks: \(mine.map { $0.frames.joined(separator: ";") })")
        for s in mine where s.value > truth / 20 {
            XCTAssertEqual(s.frames.first, "[off-cpu]", "a sleep is a blocked wait: \(s.frames)")
            XCTAssertTrue(s.frames.contains { $0.hasPrefix("__x64_sys_clock_nanosleep") || $0.hasPrefix("hrtimer_nanosleep") },
                          "kernel chain through the sleep system call: \(s.frames)")
            let userEnd = s.frames.firstIndex { $0.hasSuffix("_[k]") } ?? s.frames.count
            XCTAssertTrue(s.frames[..<userEnd].contains { $0.contains("nanosleep") }, "libc's nanosleep above do_sleep: \(s.frames)")
        }
        // The default report of a profile with waits shows both: on-CPU and off-CPU ns.
        let both = try folded(profile, value: "both")
        XCTAssertEqual(both.filter { $0.frames.first == "[off-cpu]" && contains($0.frames, chain) }.reduce(0) { $0 + $1.value }, total)
        let svg = tempPath("offcpu.svg")
        defer { unlink(svg) }
        let fg = try run(["report", profile, "--flamegraph", svg])
        XCTAssertEqual(fg.status, 0, fg.stderr)
        let text = try String(contentsOfFile: svg, encoding: .utf8)
        XCTAssertTrue(text.contains("<title>[off-cpu]") && text.contains("off-CPU"), "flame graph with an off-CPU part and its legend")
        // go tool pprof, the reference reader, sees the same off-CPU time.
        let pprof = try UnwindFixtures.run("/usr/bin/go", ["tool", "pprof", "-sample_index=offcpu", "-raw", profile])
        XCTAssertTrue(pprof.contains("offcpu/nanoseconds"), pprof)
        let top = try UnwindFixtures.run("/usr/bin/go", ["tool", "pprof", "-sample_index=offcpu", "-top", "-nodefraction=0", "-unit=ns", profile])
        let doSleep = top.split(separator: "\n").first { $0.hasSuffix(" do_sleep") }
        let cum = doSleep.flatMap { line in line.split(separator: " ", omittingEmptySubsequences: true).dropFirst(3).first }
            .flatMap { Int64($0.replacingOccurrences(of: "ns", with: "")) }
        XCTAssertEqual(cum, total, "go tool pprof's cumulative off-CPU ns of do_sleep: \(top)")
    }

    /// A thread blocked in read() on a pipe, woken 20 times by another
    /// thread's write 50 ms later: each wait is recorded with the reader's
    /// chain and the kernel's pipe read.
    func testReadOnAPipeWokenByAnotherThread() throws {
        let (profile, r) = try record(["pipe", "20", "50"])
        defer { unlink(profile) }
        let truth = try XCTUnwrap(r.value("waited_ns").flatMap(Int64.init), r.stdout) - (r.value("waited_cpu_ns").flatMap(Int64.init) ?? 0)
        let stacks = try folded(profile, value: "offcpu")
        let mine = stacks.filter { contains($0.frames, ["reader_main", "read_outer", "blocked_read"]) }
        let total = mine.reduce(0) { $0 + $1.value }
        XCTAssertEqual(Double(total), Double(truth), accuracy: Double(truth) * 0.10, "\(mine)")
        let main = try XCTUnwrap(mine.max { $0.value < $1.value })
        XCTAssertEqual(main.frames.first, "[off-cpu]")
        XCTAssertTrue(main.frames.contains { $0.hasSuffix("pipe_read_[k]") }, "kernel pipe read: \(main.frames)")
        XCTAssertTrue(main.frames.contains { $0.hasPrefix("vfs_read") }, "\(main.frames)")
        let waits = try folded(profile, value: "waits").filter { contains($0.frames, ["reader_main", "read_outer", "blocked_read"]) }
        XCTAssertEqual(waits.reduce(0) { $0 + $1.value }, 20, "one recorded wait per read: \(waits)")
    }

    /// A thread still blocked when the recording stops (its writer sleeps
    /// 10 s, the recording lasts 2) is in the profile, its wait cut at the
    /// end, with its user chain read from the stopped thread's stack.
    func testAWaitStillGoingOnAtTheEndIsRecordedCutThere() throws {
        let (profile, r) = try record(["pipe", "1", "10000"], options: ["-d", "2"], status: 128 + SIGTERM)
        defer { unlink(profile) }
        XCTAssertTrue(r.stderr.contains("still going on at the end"), r.stderr)
        let reader = try folded(profile, value: "offcpu").filter { contains($0.frames, ["reader_main", "read_outer", "blocked_read"]) }
        let total = reader.reduce(0) { $0 + $1.value }
        // The fixture starts its threads 0.3 s in: about 1.7 s of the 2 s recording.
        XCTAssertGreaterThan(total, 1_200_000_000, "\(reader)")
        XCTAssertLessThan(total, 2_100_000_000, "\(reader)")
        XCTAssertEqual(reader.first?.frames.first, "[off-cpu]")
        let raw = try UnwindFixtures.run("/usr/bin/go", ["tool", "pprof", "-raw", profile])
        XCTAssertTrue(raw.contains("offcpu_ongoing"), "the label marks a wait cut at the end")
    }

    /// Two CPU-bound threads pinned to one CPU take turns: their waits are
    /// involuntary — runnable, not blocked — and carry the user stack where
    /// they were preempted (spin_main → spin_work), copied when they next ran.
    func testPreemptedThreadsWaitRunnableNotBlocked() throws {
        let (profile, _) = try record(["spin2", "3"], options: ["--off-cpu-min-us", "0"])
        defer { unlink(profile) }
        let stacks = try folded(profile, value: "offcpu").filter { contains($0.frames, ["spin_main", "spin_work"]) }
        let runnable = stacks.filter { $0.frames.first == "[off-cpu: runnable]" }.reduce(0) { $0 + $1.value }
        let other = stacks.filter { $0.frames.first != "[off-cpu: runnable]" }.reduce(0) { $0 + $1.value }
        // 2 threads x 3 s on one CPU: each waits about half the time.
        XCTAssertGreaterThan(runnable, 1_500_000_000, "runnable ns in spin_work: \(runnable); stacks \(stacks.prefix(5))")
        XCTAssertLessThan(Double(other), Double(runnable) * 0.05, "blocked ns in spin_work: \(other)")
    }

    /// A thread that only computes has (almost) no off-CPU time, and
    /// `--off-cpu` leaves the CPU samples as they are without it: the same
    /// rate against the target's own CPU time, the same chain.
    func testBusyThreadHasAlmostNoOffCPUTimeAndCPUSamplesAreUnchanged() throws {
        try requireKernelAccess()
        let bin = try Fixtures.build("chain")
        let fixture = try FixtureProcess(bin, ["30"])
        defer { fixture.process.terminate() }
        usleep(300_000)
        var rates: [Double] = []
        // Alternating runs, in process (the CPU time window is the recording's own).
        for offCPU in [false, true, false, true] {
            var s = RecordSettings(target: .pids([fixture.pid]), output: tempPath("busy.raw"))
            s.duration = 2
            s.frequency = 499
            if offCPU { s.offCPU = OffCPUSettings(minimumNanoseconds: 0) }
            let c0 = try XCTUnwrap(cpuSeconds(pid: fixture.pid)), w0 = monotonicNanoseconds()
            let summary = try Recorder(settings: s).run()
            let c1 = try XCTUnwrap(cpuSeconds(pid: fixture.pid)), w1 = monotonicNanoseconds()
            // The fixture's CPU time while sampling ran: its CPU share over
            // the whole window (setup included, which --off-cpu makes longer)
            // times the sampling duration.
            let sampledCPU = (c1 - c0) * summary.durationSeconds / (Double(w1 - w0) / 1e9)
            let reader = try RawFileReader(path: s.output)
            defer { unlink(s.output) }
            var cpuSamples = 0
            var offNanos: UInt64 = 0
            reader.forEachSample { sample, _ in
                if sample.kind == .cpu { cpuSamples += 1 } else { offNanos += sample.weight }
            }
            XCTAssertEqual(summary.offCPUPoint != nil, offCPU)
            XCTAssertGreaterThan(sampledCPU, 1.0, "the fixture got too little CPU to judge the rate")
            // Samples per second of the target's own CPU time (the machine is shared: not wall time).
            rates.append(Double(cpuSamples) / sampledCPU)
            if offCPU {
                XCTAssertLessThan(Double(offNanos), sampledCPU * 1e9 * 0.10,
                                  "off-CPU ns of the busy thread \(offNanos) vs its CPU time \(sampledCPU) s")
            }
        }
        for rate in rates { XCTAssertEqual(rate, 499, accuracy: 499 * 0.2, "samples per CPU second, without/with --off-cpu alternating: \(rates)") }
        let without = (rates[0] + rates[2]) / 2, with = (rates[1] + rates[3]) / 2
        XCTAssertEqual(with, without, accuracy: without * 0.10, "rates without/with --off-cpu: \(rates)")
    }

    /// The attach point: each one this kernel accepts works when forced (the
    /// stacks come out the same), each one it refuses fails with a message
    /// naming it; by default the first accepted in order of preference is used.
    func testEachAttachPointWorksWhenForcedOrIsRefusedClearly() throws {
        try requireKernelAccess()
        let accepted = OffCPUAttachPoint.allCases.filter { Doctor.tryAttach($0).error == nil }
        XCTAssertFalse(accepted.isEmpty, "no off-CPU attach point works here")
        for point in OffCPUAttachPoint.allCases {
            let bin = try Fixtures.build("offcpu")
            let out = tempPath("attach.pb.gz")
            defer { unlink(out) }
            let r = try run(["record", "--off-cpu", "-o", out, "--", bin, "sleep", "1", "20"],
                            env: ["SPROF_OFFCPU_ATTACH": point.shortName])
            if accepted.contains(point) {
                XCTAssertEqual(r.status, 0, "\(point): \(r.stderr)")
                XCTAssertTrue(r.stderr.contains("off-CPU via \(point.title)"), r.stderr)
                let truth = try XCTUnwrap(r.value("waited_ns").flatMap(Int64.init)) - (r.value("waited_cpu_ns").flatMap(Int64.init) ?? 0)
                let stacks = try folded(out, value: "offcpu").filter { contains($0.frames, ["sleeper_main", "wait_outer", "wait_middle", "do_sleep"]) }
                let total = stacks.reduce(0) { $0 + $1.value }
                XCTAssertEqual(Double(total), Double(truth), accuracy: Double(truth) * 0.10, "\(point): \(stacks)")
                for s in stacks where s.value > truth / 10 {
                    XCTAssertTrue(s.frames.contains { $0.hasPrefix("hrtimer_nanosleep") || $0.hasPrefix("__x64_sys_clock_nanosleep") }, "\(point): \(s.frames)")
                    XCTAssertFalse(s.frames.contains { $0.hasPrefix("bpf_prog_") || $0.hasPrefix("bpf_trace_run") }, "\(point): sprof's own frames: \(s.frames)")
                }
                let comments = try UnwindFixtures.run("/usr/bin/go", ["tool", "pprof", "-comments", out])
                XCTAssertTrue(comments.contains("attached to \(point.shortName)"), comments)
            } else {
                XCTAssertNotEqual(r.status, 0, "\(point) is refused by the probe but the recording worked")
                XCTAssertTrue(r.stderr.contains("off-CPU profiling cannot attach on this kernel"), r.stderr)
                XCTAssertTrue(r.stderr.contains(point.title), r.stderr)
                XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no profile on failure")
            }
        }
        // Default: the first accepted.
        let bin = try Fixtures.build("offcpu")
        let out = tempPath("default.pb.gz")
        defer { unlink(out) }
        let r = try run(["record", "--off-cpu", "-o", out, "--", bin, "sleep", "0.3", "20"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("off-CPU via \(accepted[0].title)"), r.stderr)
    }

    /// Every off-CPU program stays far below the verifier's limits in every
    /// attach variant the kernel loads.
    func testOffCPUProgramsStayWithinTheInstructionBudget() throws {
        try requireKernelAccess()
        var loaded = 0
        for point in OffCPUAttachPoint.allCases {
            for forced in [Set<String>(), ["perfbuf", "chunked", "saved-regs", "task"]] {
                let v = CaptureVariants.probe(forcedFallbacks: forced)
                guard let obj = try? SamplerObject(variants: v, userStackSize: 65536, allTasks: false,
                                                   offCPU: (OffCPUSettings(), point)) else { continue }
                loaded += 1
                let counts = obj.verifiedInstructionsByProgram
                XCTAssertGreaterThanOrEqual(counts.count, point == .kprobe || point == .fentry ? 2 : 3, "\(point): \(counts)")
                for (name, n) in counts {
                    XCTAssertGreaterThan(n, 50, "\(point) \(v) \(name)")
                    XCTAssertLessThanOrEqual(n, 4000, "\(point) \(v) \(name)")
                }
            }
        }
        XCTAssertGreaterThanOrEqual(loaded, 6, "tp_btf, raw_tp and tracepoint (and kprobe, which loads without attaching) in both variants")
    }
}
