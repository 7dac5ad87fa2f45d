import CSprof
import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// A Linux capability, by its number in include/uapi/linux/capability.h.
public struct Capability: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    public static let dacOverride = Capability(rawValue: 1)
    public static let dacReadSearch = Capability(rawValue: 2)
    public static let setpcap = Capability(rawValue: 8)
    public static let netBindService = Capability(rawValue: 10)
    public static let sysPtrace = Capability(rawValue: 19)
    public static let sysAdmin = Capability(rawValue: 21)
    public static let sysResource = Capability(rawValue: 24)
    public static let syslog = Capability(rawValue: 34)
    /// 5.8+.
    public static let perfmon = Capability(rawValue: 38)
    /// 5.8+.
    public static let bpf = Capability(rawValue: 39)
    /// 5.9+.
    public static let checkpointRestore = Capability(rawValue: 40)

    /// The names capabilities(7) and libcap use, lowercase, by number.
    static let names = [
        "cap_chown", "cap_dac_override", "cap_dac_read_search", "cap_fowner", "cap_fsetid", "cap_kill",
        "cap_setgid", "cap_setuid", "cap_setpcap", "cap_linux_immutable", "cap_net_bind_service",
        "cap_net_broadcast", "cap_net_admin", "cap_net_raw", "cap_ipc_lock", "cap_ipc_owner", "cap_sys_module",
        "cap_sys_rawio", "cap_sys_chroot", "cap_sys_ptrace", "cap_sys_pacct", "cap_sys_admin", "cap_sys_boot",
        "cap_sys_nice", "cap_sys_resource", "cap_sys_time", "cap_sys_tty_config", "cap_mknod", "cap_lease",
        "cap_audit_write", "cap_audit_control", "cap_setfcap", "cap_mac_override", "cap_mac_admin", "cap_syslog",
        "cap_wake_alarm", "cap_block_suspend", "cap_audit_read", "cap_perfmon", "cap_bpf", "cap_checkpoint_restore",
    ]

    /// "cap_bpf"; "cap_41" for one newer than this list.
    public var name: String { rawValue < Self.names.count ? Self.names[rawValue] : "cap_\(rawValue)" }
    public var description: String { name }

    public init?(name: String) {
        guard let i = Self.names.firstIndex(of: name.lowercased()) else { return nil }
        rawValue = i
    }

    public static func < (a: Capability, b: Capability) -> Bool { a.rawValue < b.rawValue }
}

/// A set of capabilities as the kernel keeps them: bit N is capability N
/// (the `CapEff:` hex of /proc/PID/status, capget(2)'s two 32-bit words).
public struct CapabilitySet: Equatable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    public init(rawValue: UInt64) { self.rawValue = rawValue }
    public init(_ caps: [Capability]) {
        rawValue = caps.reduce(0) { $0 | (1 << UInt64($1.rawValue)) }
    }

    /// Every capability this kernel knows: 0 through /proc/sys/kernel/cap_last_cap.
    public static func all(lastCapability: Int) -> CapabilitySet {
        CapabilitySet(rawValue: lastCapability >= 63 ? .max : (1 << UInt64(lastCapability + 1)) - 1)
    }

    /// A `Cap*:` value of /proc/PID/status ("000001ffffffffff").
    public init?(hex: some StringProtocol) {
        guard let v = UInt64(String(hex).trimmed(" \t"), radix: 16) else { return nil }
        rawValue = v
    }

    public func contains(_ c: Capability) -> Bool { c.rawValue < 64 && rawValue & (1 << UInt64(c.rawValue)) != 0 }
    public mutating func insert(_ c: Capability) { rawValue |= 1 << UInt64(c.rawValue) }
    public mutating func remove(_ c: Capability) { rawValue &= ~(1 << UInt64(c.rawValue)) }
    public func intersection(_ o: CapabilitySet) -> CapabilitySet { CapabilitySet(rawValue: rawValue & o.rawValue) }
    public func subtracting(_ o: CapabilitySet) -> CapabilitySet { CapabilitySet(rawValue: rawValue & ~o.rawValue) }
    public var isEmpty: Bool { rawValue == 0 }

    public var members: [Capability] { (0..<64).filter { rawValue & (1 << UInt64($0)) != 0 }.map { Capability(rawValue: $0) } }
    /// "cap_bpf, cap_perfmon"; "none" when empty.
    public var description: String { isEmpty ? "none" : members.map(\.name).joined(separator: ", ") }
}

/// What `sprof agent` keeps once its programs are loaded and attached and its
/// HTTP endpoint is bound, and why: everything else that uid 0 could do is
/// dropped from the permitted, effective, inheritable, ambient and bounding
/// sets of every thread, no_new_privs is set and the securebits are locked
/// (SECBIT_NOROOT: an execve(2) gives root nothing back), so that a hostile
/// input (an ELF file, a /proc file, a perf map, an HTTP request) that took
/// the agent over would hold what the agent holds, not all of root.
///
/// The uid stays 0: the store, the ClickHouse spool, the runtime directory
/// (/run/sprof) and the DWARF cache are root's own directories, written
/// through their owner bits without CAP_DAC_OVERRIDE. The HTTP endpoint is
/// bound before the drop; CAP_NET_BIND_SERVICE is not kept (a reload that
/// moves it below port 1024 fails, said in the log, the page stays off).
public struct PrivilegePlan: Equatable, Sendable {
    /// What is kept, and why (each entry's reason cites the kernel's check).
    public var kept: [(Capability, String)]
    /// Lines for the log: a capability kept in place of another on an older
    /// kernel, one wanted but not held (and what that costs).
    public var notes: [String]
    /// The capability set kept.
    public var set: CapabilitySet { CapabilitySet(kept.map(\.0)) }

    public static func == (a: PrivilegePlan, b: PrivilegePlan) -> Bool {
        a.kept.map(\.0) == b.kept.map(\.0) && a.kept.map(\.1) == b.kept.map(\.1) && a.notes == b.notes
    }

    /// Why each capability is kept after the programs are attached:
    ///
    /// - CAP_BPF and CAP_PERFMON: SIGHUP reloads the configuration by loading
    ///   the sampling program again (a new recorder: off-CPU, the stack size
    ///   and the rate may change), which takes what the first load took:
    ///   kernel/bpf/syscall.c bpf_prog_load (CAP_BPF for any program type but
    ///   socket filters and cgroup skb, CAP_PERFMON for perf_event, kprobe
    ///   and tracing programs: is_perfmon_prog_type) and
    ///   kernel/events/core.c perf_event_open (a CPU-wide event needs
    ///   perfmon_capable() above kernel.perf_event_paranoid 0). What the
    ///   running recorder does needs neither: reading the ring buffer is
    ///   reading memory mapped from its map fd, and PERF_EVENT_IOC_PERIOD on
    ///   its own events (perf_event_period) checks no capability.
    /// - CAP_SYS_PTRACE: /proc/PID/root (proc_root_link ->
    ///   proc_fd_access_allowed), /proc/PID/mem (off-CPU stacks) and
    ///   /proc/PID/map_files are allowed by ptrace_may_access
    ///   (kernel/ptrace.c __ptrace_may_access: another uid needs
    ///   CAP_SYS_PTRACE), and /proc/PID/maps of a process of uid 0 that
    ///   holds capabilities the agent no longer has -- systemd, sshd, every
    ///   root daemon -- is refused without it (security/commoncap.c
    ///   cap_ptrace_access_check: the target's permitted set must be a
    ///   subset of the caller's). Seen on 6.18 without it: /proc/1/maps,
    ///   /proc/PID/root and /proc/PID/mem of a process of uid 65534 refused.
    /// - CAP_DAC_READ_SEARCH: a process's binaries and libraries are read
    ///   through /proc/PID/root/PATH (containers see their own files); a
    ///   binary of mode 0700 of another user, one under a 0700 home
    ///   directory, a perf map `/tmp/perf-PID.map` of mode 0600, or a
    ///   container's root with a remapped uid is not readable by uid 0
    ///   without it (fs/namei.c generic_permission -> capable_wrt_inode_uidgid).
    /// - CAP_CHECKPOINT_RESTORE (5.9+; CAP_SYS_ADMIN before): opening
    ///   /proc/PID/map_files/START-END, the very file mapped (deleted or
    ///   replaced since, or not visible by path), is refused without it
    ///   (fs/proc/base.c proc_map_files_get_link:
    ///   checkpoint_restore_ns_capable(&init_user_ns)).
    /// - CAP_SYSLOG: /proc/kallsyms shows addresses only to a reader with it
    ///   unless kernel.kptr_restrict is 0 and kernel.perf_event_paranoid is
    ///   at most 1 (kernel/ksyms_common.c kallsyms_show_value, checked with
    ///   the opener's credentials); kernel frames are named from it, the
    ///   core kernel's once per boot and modules' as they are loaded.
    ///
    /// Not kept, because nothing after the load needs them: CAP_SYS_ADMIN
    /// (5.8+), CAP_DAC_OVERRIDE (the agent writes only directories uid 0
    /// owns), CAP_NET_BIND_SERVICE (the endpoint is bound), CAP_SYS_RESOURCE
    /// (libbpf raises RLIMIT_MEMLOCK at the first load on kernels before
    /// 5.11, which charge BPF memory to it; the limit stays raised for
    /// reloads). /proc/PID/status, comm, cgroup and stat are readable by
    /// anyone (fs/proc/base.c tgid_base_stuff modes).
    ///
    /// On a kernel without CAP_BPF and CAP_PERFMON (before 5.8,
    /// cap_last_cap < 39) loading needs CAP_SYS_ADMIN, which is kept
    /// instead; before 5.9 (cap_last_cap < 40) map_files needs CAP_SYS_ADMIN
    /// too. A capability the process does not hold (a service manager's
    /// bounding set) cannot be kept: it is named in ``notes``.
    public static func agent(lastCapability: Int, permitted: CapabilitySet) -> PrivilegePlan {
        var want: [(Capability, String)] = []
        var notes: [String] = []
        let hasBPFCaps = lastCapability >= Capability.bpf.rawValue
        let hasCheckpointRestore = lastCapability >= Capability.checkpointRestore.rawValue
        if hasBPFCaps {
            want.append((.bpf, "loading the sampling program again on SIGHUP (bpf_prog_load)"))
            want.append((.perfmon, "opening the CPU-wide perf events and tracing programs again on SIGHUP"))
        }
        if !hasBPFCaps || !hasCheckpointRestore {
            var uses: [String] = []
            if !hasBPFCaps { uses.append("loading BPF and opening perf events on SIGHUP (no CAP_BPF/CAP_PERFMON before Linux 5.8)") }
            if !hasCheckpointRestore { uses.append("opening /proc/PID/map_files (no CAP_CHECKPOINT_RESTORE before Linux 5.9)") }
            want.append((.sysAdmin, uses.joined(separator: "; ")))
            notes.append("this kernel knows capabilities up to \(lastCapability): cap_sys_admin is kept for " + uses.joined(separator: " and "))
        }
        want.append((.sysPtrace, "/proc/PID/root, /proc/PID/mem, map_files, and /proc/PID/maps of processes holding capabilities (ptrace_may_access)"))
        want.append((.dacReadSearch, "other users' binaries, libraries and perf maps through /proc/PID/root"))
        if hasCheckpointRestore {
            want.append((.checkpointRestore, "/proc/PID/map_files: deleted or replaced binaries (proc_map_files_get_link)"))
        }
        want.append((.syslog, "kernel symbol addresses in /proc/kallsyms (kallsyms_show_value)"))
        let held = want.filter { permitted.contains($0.0) }
        let costs: [Capability: String] = [
            .bpf: "a SIGHUP reload cannot load the program again",
            .perfmon: "a SIGHUP reload cannot open the perf events again",
            .sysAdmin: "see above",
            .sysPtrace: "processes of other users and of root daemons are not read (no mappings, no names)",
            .dacReadSearch: "files other users keep private are not read (no names for them)",
            .checkpointRestore: "deleted or replaced binaries are not read through /proc/PID/map_files",
            .syslog: "kernel frames are unnamed when kptr_restrict or perf_event_paranoid hides /proc/kallsyms addresses",
        ]
        for (cap, _) in want where !permitted.contains(cap) {
            notes.append("\(cap.name) is not held (not in the bounding set this process was started with), so not kept: \(costs[cap] ?? "")")
        }
        return PrivilegePlan(kept: held, notes: notes)
    }
}

/// One thread's credentials as /proc/PID/task/TID/status shows them.
public struct ThreadCapabilities: Equatable, Sendable {
    public var tid: Int32
    public var name: String
    public var effective: CapabilitySet
    public var permitted: CapabilitySet
    public var inheritable: CapabilitySet
    public var bounding: CapabilitySet
    public var ambient: CapabilitySet
    public var noNewPrivileges: Bool

    /// Parses a status file (fs/proc/array.c task_cap, proc_pid_status).
    public init?(tid: Int32, status: String) {
        self.tid = tid
        var fields: [Substring: Substring] = [:]
        for line in status.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            fields[line[..<colon]] = line[line.index(after: colon)...]
        }
        guard let e = fields["CapEff"].flatMap(CapabilitySet.init(hex:)),
              let p = fields["CapPrm"].flatMap(CapabilitySet.init(hex:)),
              let i = fields["CapInh"].flatMap(CapabilitySet.init(hex:)),
              let b = fields["CapBnd"].flatMap(CapabilitySet.init(hex:)) else { return nil }
        name = fields["Name"].map { String($0).trimmed(" \t") } ?? ""
        effective = e
        permitted = p
        inheritable = i
        bounding = b
        ambient = fields["CapAmb"].flatMap(CapabilitySet.init(hex:)) ?? CapabilitySet(rawValue: 0)
        noNewPrivileges = fields["NoNewPrivs"].map { String($0).trimmed(" \t") == "1" } ?? false
    }

    /// Every thread of process `pid` (threads that exit meanwhile are left out).
    public static func of(pid: Int32) -> [ThreadCapabilities] {
        let base = "/proc/\(pid)/task"
        guard let tids = try? Syscalls.listDirectory(base) else { return [] }
        return tids.compactMap { Int32($0) }.sorted().compactMap { tid in
            guard let text = KernelInfo.readFile(base + "/\(tid)/status") else { return nil }
            return ThreadCapabilities(tid: tid, status: text)
        }
    }
}

/// Drops capabilities on every thread of this process (sprof_caps.h: each
/// thread changes its own credentials; capset(2) and prctl(2) act on the
/// calling thread only), then checks each thread's status file.
public enum Privileges {
    /// /proc/sys/kernel/cap_last_cap (3.2+); 40 (CAP_CHECKPOINT_RESTORE,
    /// this header's last) when it cannot be read.
    public static var lastCapability: Int {
        KernelInfo.readInt("/proc/sys/kernel/cap_last_cap") ?? Capability.checkpointRestore.rawValue
    }

    /// The calling thread's effective and permitted sets (capget(2)).
    public static func current() -> (effective: CapabilitySet, permitted: CapabilitySet) {
        var e: UInt64 = 0, p: UInt64 = 0, i: UInt64 = 0
        guard sprof_caps_get(&e, &p, &i) == 0 else { return (CapabilitySet(rawValue: 0), CapabilitySet(rawValue: 0)) }
        return (CapabilitySet(rawValue: e), CapabilitySet(rawValue: p))
    }

    /// Keeps exactly `keep` (permitted and effective; inheritable and
    /// ambient emptied) on every thread, sets no_new_privs, and -- when the
    /// process holds CAP_SETPCAP, which both need -- drops the rest of the
    /// bounding set and locks the securebits. Without CAP_SETPCAP (a service
    /// manager's bounding set) the bounding set stays as it was: with
    /// no_new_privs an execve(2) still gains nothing (security/commoncap.c
    /// cap_bprm_creds_from_file: the new permitted set is cut to the old
    /// one). Then reads every thread's status and throws unless each shows
    /// the sets asked for.
    /// - Returns: whether the bounding set was dropped too.
    @discardableResult
    public static func restrict(to keep: CapabilitySet) throws(CaptureError) -> Bool {
        let last = lastCapability
        let bounding = current().effective.contains(.setpcap)
        var result = sprof_caps_result()
        if sprof_caps_restrict_all_threads(keep.rawValue, Int32(last), bounding ? 1 : 0, &result) != 0 {
            let steps: [UInt32: String] = [
                SPROF_CAPS_BOUNDING.rawValue: "dropping from the bounding set (prctl PR_CAPBSET_DROP)",
                SPROF_CAPS_SECUREBITS.rawValue: "locking the securebits (prctl PR_SET_SECUREBITS)",
                SPROF_CAPS_AMBIENT.rawValue: "clearing the ambient set (prctl PR_CAP_AMBIENT)",
                SPROF_CAPS_NO_NEW_PRIVS.rawValue: "setting no_new_privs (prctl PR_SET_NO_NEW_PRIVS)",
                SPROF_CAPS_CAPSET.rawValue: "setting the permitted and effective sets (capset)",
                SPROF_CAPS_SIGNAL.rawValue: "signalling the thread to change its own credentials (SIGSYS)",
                SPROF_CAPS_THREADS.rawValue: "listing /proc/self/task",
                SPROF_CAPS_NO_ANSWER.rawValue: "waiting for the thread to change its credentials (it did not run the SIGSYS handler in 2 s: SIGSYS blocked?)",
            ]
            throw .privilegeDropFailed(step: steps[result.step.rawValue] ?? "step \(result.step.rawValue)",
                                       errno: result.error, thread: result.tid, threadName: threadName(result.tid))
        }
        let wantBounding = bounding ? keep : nil
        for t in ThreadCapabilities.of(pid: getpid()) {
            let ok = t.effective == keep && t.permitted == keep && t.inheritable.isEmpty && t.ambient.isEmpty
                && t.noNewPrivileges && (wantBounding.map { t.bounding == $0 } ?? true)
            if !ok {
                throw .privilegesStillHeld(thread: t.tid, threadName: t.name, effective: t.effective.description,
                                           expected: keep.description)
            }
        }
        return bounding
    }

    private static func threadName(_ tid: Int32) -> String {
        KernelInfo.readFile("/proc/self/task/\(tid)/comm")?.trimmed(" \n") ?? ""
    }
}
