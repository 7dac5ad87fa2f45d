import SprofBase
#if canImport(Glibc)
import Glibc
#endif

/// Which file an open file is: its device and inode, the pair
/// `/proc/PID/maps` prints for a mapping (proc(5)), so a file opened by path
/// can be checked to be the one a process maps.
public struct FileIdentity: Hashable, Sendable, CustomStringConvertible {
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32
    public var inode: UInt64

    public init(deviceMajor: UInt32, deviceMinor: UInt32, inode: UInt64) {
        self.deviceMajor = deviceMajor; self.deviceMinor = deviceMinor; self.inode = inode
    }

    /// The mapping's, as the kernel printed it; nil for anonymous memory or
    /// a mapping recorded without them (inode 0).
    public init?(mapping: Mapping) {
        guard mapping.inode != 0 else { return nil }
        self.init(deviceMajor: mapping.deviceMajor, deviceMinor: mapping.deviceMinor, inode: mapping.inode)
    }

    /// From `stat(2)`'s `st_dev`, in glibc's encoding of `dev_t`
    /// (sysmacros.h `gnu_dev_major`/`gnu_dev_minor`: major in bits 8-19 and
    /// 32-43, minor in bits 0-7 and 12-31 and 44-63).
    init(_ st: stat) {
        let dev = UInt64(st.st_dev)
        deviceMajor = UInt32(truncatingIfNeeded: ((dev >> 8) & 0xfff) | ((dev >> 32) & ~UInt64(0xfff)))
        deviceMinor = UInt32(truncatingIfNeeded: (dev & 0xff) | ((dev >> 12) & ~UInt64(0xff)))
        inode = UInt64(st.st_ino)
    }

    public var description: String {
        "device \(String(deviceMajor, radix: 16)):\(String(deviceMinor, radix: 16)) inode \(inode)"
    }
}
