import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// What a process's control group says about where it runs: the cgroup
/// path, the container it is in, the systemd unit that started it. `sprof
/// agent` puts these on every sample (labels `cgroup`, `container_id`,
/// `systemd_unit`), so a fleet can be sliced by service or container.
///
/// The path comes from `/proc/PID/cgroup` (cgroups(7), "/proc/pid/cgroup"):
/// one `hierarchy-ID:controllers:path` line per hierarchy. The unified
/// (v2) line is `0::path`; on a v1 or hybrid host the systemd hierarchy
/// (`name=systemd`) carries the unit layout, and a single controller may be
/// the only one not at `/`. The first of these that is not the root wins.
///
/// Containers and units are recognised by the names their managers give
/// cgroups, innermost segment first:
/// - systemd: a segment ending in `.service`, else `.scope`
///   (systemd.unit(5); user units sit below `user@UID.service`, so the
///   innermost `.service` is the application's own);
/// - Docker (`/docker/ID`, systemd driver `docker-ID.scope`), containerd's
///   CRI (`cri-containerd-ID.scope`, cgroupfs `/kubepods/.../podUID/ID`),
///   CRI-O (`crio-ID.scope`), Podman (`libpod-ID.scope`): the ID is 64
///   hexadecimal digits, a segment of its own or after the last `-` of a
///   `.scope`.
public struct CgroupLabels: Equatable, Sendable {
    /// The cgroup path, `/` for the root.
    public var path: String
    /// The container's 64-hex-digit ID, if the path names one.
    public var containerID: String?
    /// The innermost systemd unit (`nginx.service`, `docker-ID.scope`), if any.
    public var systemdUnit: String?

    public init(path: String, containerID: String? = nil, systemdUnit: String? = nil) {
        self.path = path
        self.containerID = containerID
        self.systemdUnit = systemdUnit
    }

    /// The labels of a cgroup path.
    public init(path: String) {
        self.path = path.isEmpty ? "/" : path
        let segments = path.split(separator: "/").map(String.init)
        var container: String?
        var service: String?
        var scope: String?
        for segment in segments.reversed() {
            if container == nil { container = Self.containerID(in: segment) }
            if service == nil && segment.hasSuffix(".service") { service = segment }
            if scope == nil && segment.hasSuffix(".scope") { scope = segment }
        }
        containerID = container
        systemdUnit = service ?? scope
    }

    /// A container ID in one path segment: the whole segment, or what
    /// follows the last `-` of a `NAME-ID.scope`.
    static func containerID(in segment: String) -> String? {
        var s = Substring(segment)
        if s.hasSuffix(".scope") { s = s.dropLast(6) }
        if let dash = s.lastIndex(of: "-") { s = s[s.index(after: dash)...] }
        guard s.utf8.count == 64, s.utf8.allSatisfy({ ($0 >= 48 && $0 <= 57) || ($0 >= 97 && $0 <= 102) }) else { return nil }
        return String(s)
    }

    /// The path a `/proc/PID/cgroup` text gives (see the type's
    /// documentation for the order); `/` when every line is at the root.
    public static func path(fromProcCgroup text: String) -> String {
        var unified: String?
        var systemd: String?
        var other: String?
        for line in text.split(separator: "\n") {
            // hierarchy-ID:controller-list:cgroup-path; the path may hold ':'.
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            guard path != "/" && !path.isEmpty else { continue }
            if parts[0] == "0" && parts[1].isEmpty {
                unified = unified ?? path
            } else if parts[1] == "name=systemd" {
                systemd = systemd ?? path
            } else {
                other = other ?? path
            }
        }
        return unified ?? systemd ?? other ?? "/"
    }

    /// The labels of a live process; nil when it is gone (or `/proc` is
    /// not readable).
    public static func of(pid: Int32, procRoot: String = "/proc") -> CgroupLabels? {
        guard let text = readSmallFile("\(procRoot)/\(pid)/cgroup") else { return nil }
        return CgroupLabels(path: path(fromProcCgroup: text))
    }
}

/// A /proc file read whole (they are small and report size 0).
func readSmallFile(_ path: String) -> String? {
    guard let fd = try? POSIX.open(path, O_RDONLY | O_CLOEXEC) else { return nil }
    defer { try? POSIX.close(fd) }
    return (try? POSIX.readAll(fd, size: 4096)).map { String(decoding: $0, as: UTF8.self) }
}
