/// Addresses say what they are relative to; no bare `UInt64` address crosses a
/// module boundary (see shared DESIGN.md). The three spaces, after samply:
///
/// - ``ProcessAddress``: a virtual address in one process (what `ip`, `sp` and
///   return addresses are). Meaningless without that process's mappings.
/// - ``FileOffset``: a byte offset in an ELF file (what `/proc/PID/maps` gives
///   as a mapping's offset).
/// - ``StatedAddress``: an address as the ELF file states it (`st_value`,
///   `sh_addr`, `p_vaddr`, DWARF `DW_AT_low_pc`, CFI `initial_location`);
///   the "SVMA". For a PIE or shared library it differs from the
///   ``ProcessAddress`` by the load bias.
public struct ProcessAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt64) { self.rawValue = value }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "0x" + String(rawValue, radix: 16) }
    /// The address `bytes` further on (wrapping, as the hardware would).
    @inlinable public func advanced(by bytes: Int64) -> ProcessAddress {
        ProcessAddress(rawValue &+ UInt64(bitPattern: bytes))
    }
}

/// A byte offset in a file.
public struct FileOffset: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt64) { self.rawValue = value }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "+0x" + String(rawValue, radix: 16) }
}

/// An address as stated in an ELF file (its own virtual addresses, "SVMA").
public struct StatedAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt64) { self.rawValue = value }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "svma:0x" + String(rawValue, radix: 16) }
}

/// A kernel virtual address (a `bpf_get_stack` frame, a `/proc/kallsyms` entry).
public struct KernelAddress: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible {
    public var rawValue: UInt64
    @inlinable public init(rawValue: UInt64) { self.rawValue = rawValue }
    @inlinable public init(_ value: UInt64) { self.rawValue = value }
    @inlinable public static func < (a: Self, b: Self) -> Bool { a.rawValue < b.rawValue }
    public var description: String { "0x" + String(rawValue, radix: 16) }
}
