import CLibIberty
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// Turns mangled symbol names into the names people read, with the
/// implementations the languages' own tools use rather than one of ours:
///
/// - **C++ (Itanium ABI) and Rust** (legacy `_ZN…17h<hash>E` and v0 `_R…`):
///   libiberty's `cplus_demangle(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO)`,
///   the code behind binutils' `nm -C` and `addr2line -C` (and, for C++,
///   the same cp-demangle.c that libstdc++'s `__cxa_demangle` is built
///   from). It drops a legacy Rust name's `::h<16 hex digits>` hash, as
///   `nm -C` does: the hash is a build artifact that changes with every
///   compiler, not part of the name.
/// - **Swift** (`$s…` Swift 5, `$S…` 4.2, `_T0…` 4, `$e…` Embedded): the
///   Swift project's own demangler, `swift_demangle_getSimplifiedDemangledName`
///   from the toolchain's `libswiftDemangle.so` (include/swift/SwiftDemangle/
///   SwiftDemangle.h), loaded with `dlopen` from beside the Swift runtime this
///   process runs with. It prints what `swift demangle --simplified` prints
///   (`leafHot(_:)`, `Array.append(_:)`). Where only the runtime is installed,
///   the runtime's `swift_demangle` (full form, `unwind_swift.leafHot(Swift.Double) -> Swift.Double`)
///   is the fallback.
///
/// A name that is not mangled, or that its demangler rejects, is returned
/// as it is: never a blank. Symbol versions (`qsort@@GLIBC_2.2.5`) are not
/// this type's business; see ``Symbolizer``. Thread-safe: both demanglers are
/// reentrant.
public enum Demangler {
    /// The language a mangled name is in, by its prefix.
    public enum Scheme: Sendable, Equatable {
        case itanium   // C++, and legacy Rust (`_ZN…17h…E`)
        case rustV0    // `_R`
        case swift
    }

    /// Which scheme `name` is mangled in, nil for a plain (C) name.
    public static func scheme(of name: Substring) -> Scheme? {
        // Swift: Swift 5 `$s`, 4.2 `$S`, 4 `_T0`, Embedded `$e`; Darwin adds a leading `_`.
        let n = name.hasPrefix("_$") ? name.dropFirst() : name
        if n.hasPrefix("$s") || n.hasPrefix("$S") || n.hasPrefix("$e") || n.hasPrefix("_T0") { return .swift }
        if name.hasPrefix("_Z") { return .itanium }
        if name.hasPrefix("_R") { return .rustV0 }
        return nil
    }

    /// The demangled form of `name`, or `name` itself.
    public static func demangle(_ name: String) -> String {
        switch scheme(of: name[...]) {
        case nil: return name
        case .itanium, .rustV0: return iberty(name) ?? name
        case .swift: return swift(name) ?? name
        }
    }

    /// libiberty: `DMGL_AUTO` picks the scheme (GNU v3 or Rust), `DMGL_PARAMS`
    /// keeps the parameter list, `DMGL_ANSI` const/volatile (include/demangle.h).
    static func iberty(_ name: String) -> String? {
        guard let out = cplus_demangle(name, DMGL_PARAMS | DMGL_ANSI | DMGL_AUTO) else { return nil }
        defer { free(out) }
        return String(cString: out)
    }

    static func swift(_ name: String) -> String? {
        if let simplified = SwiftDemangler.shared.simplified {
            var buffer = [CChar](repeating: 0, count: 512)
            var n = simplified(name, &buffer, buffer.count)
            if n >= buffer.count {
                // The return value is the whole length; the output was cut to fit.
                buffer = [CChar](repeating: 0, count: n + 1)
                n = simplified(name, &buffer, buffer.count)
            }
            if n > 0 { return String(cString: buffer) }
        }
        if let full = SwiftDemangler.shared.full {
            let utf8 = Array(name.utf8)
            guard let out = utf8.withUnsafeBufferPointer({ b in
                b.withMemoryRebound(to: CChar.self) { full($0.baseAddress, $0.count, nil, nil, 0) }
            }) else { return nil }
            defer { free(out) }
            return String(cString: out)
        }
        return nil
    }

    /// Which Swift demangler is in use, for `doctor` and the closing summary.
    public static var swiftDemanglerDescription: String {
        if let path = SwiftDemangler.shared.simplifiedPath { return "swift_demangle_getSimplifiedDemangledName (\(path))" }
        if SwiftDemangler.shared.full != nil { return "swift_demangle (the Swift runtime; full, not simplified, names)" }
        return "none (Swift names stay mangled: neither libswiftDemangle.so nor the Swift runtime's swift_demangle was found)"
    }
}

/// The Swift demanglers, looked up once.
private final class SwiftDemangler: Sendable {
    /// `size_t swift_demangle_getSimplifiedDemangledName(const char *MangledName, char *OutputBuffer, size_t Length)`:
    /// the length of the whole demangled name (0: not a Swift name), the
    /// output cut to `Length` bytes with its NUL.
    typealias Simplified = @convention(c) (UnsafePointer<CChar>?, UnsafeMutablePointer<CChar>?, Int) -> Int
    /// `char *swift_demangle(const char *mangledName, size_t mangledNameLength, char *outputBuffer, size_t *outputBufferSize, uint32_t flags)`
    /// (stdlib/public/runtime/Demangle.cpp): malloc'd when `outputBuffer` is NULL.
    typealias Full = @convention(c) (UnsafePointer<CChar>?, Int, UnsafeMutablePointer<CChar>?, UnsafeMutablePointer<Int>?, UInt32) -> UnsafeMutablePointer<CChar>?

    let simplified: Simplified?
    let simplifiedPath: String?
    let full: Full?

    static let shared = SwiftDemangler()

    private init() {
        // RTLD_DEFAULT: the Swift runtime this process is linked with.
        let runtime = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "swift_demangle")
        full = runtime.map { unsafeBitCast($0, to: Full.self) }
        var candidates = ["libswiftDemangle.so"]
        // The toolchain keeps libswiftDemangle.so in usr/lib, two levels above
        // the runtime's usr/lib/swift/linux/libswiftCore.so.
        // (dladdr needs _GNU_SOURCE, which Swift's Glibc module lacks: the
        // runtime's path is read from /proc/self/maps instead.)
        if let maps = try? String(contentsOfFile: "/proc/self/maps", encoding: .utf8),
           let line = maps.split(separator: "\n").first(where: { $0.hasSuffix("/libswiftCore.so") }),
           let slash = line.firstIndex(of: "/") {
            var parts = line[slash...].split(separator: "/", omittingEmptySubsequences: false)
            if parts.count > 4 {
                parts.removeLast(4)  // lib/swift/linux/libswiftCore.so -> the toolchain's usr
                candidates.insert(parts.joined(separator: "/") + "/lib/libswiftDemangle.so", at: 0)
            }
        }
        candidates.append("/opt/swift/usr/lib/libswiftDemangle.so")
        for path in candidates {
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL),
                  let sym = dlsym(handle, "swift_demangle_getSimplifiedDemangledName") else { continue }
            simplified = unsafeBitCast(sym, to: Simplified.self)
            simplifiedPath = path
            return
        }
        simplified = nil
        simplifiedPath = nil
    }
}
