import SprofBase
import SprofELF
import Dispatch
#if canImport(Glibc)
import Glibc
#endif

/// One frame of a symbolized address: a function, and where in its source
/// the address is. An address inside inlined code gives several frames.
public struct SymbolizedFrame: Hashable, Sendable {
    /// What people read: demangled (C++ with its parameters, Rust without
    /// its hash, Swift in `swift demangle --simplified`'s form), without a
    /// symbol version; `module+0xOFFSET` when nothing names the address.
    public var function: String
    /// The name as the binary states it (mangled), without a symbol version
    /// (pprof's `system_name`); equal to ``function`` for C and unknowns.
    public var systemName: String
    /// The source file (as DWARF states it, usually absolute), nil without DWARF.
    public var file: String?
    /// 1-based source line, 0 when not known.
    public var line: Int
    /// True for a frame that the compiler inlined into the next frame out.
    public var isInlined: Bool

    public init(function: String, systemName: String, file: String? = nil, line: Int = 0, isInlined: Bool = false) {
        self.function = function; self.systemName = systemName; self.file = file; self.line = line; self.isInlined = isInlined
    }
}

/// An address and the frames it stands for.
public struct SymbolizedLocation: Hashable, Sendable {
    /// Where the code lives, which decides how frames are marked in folded
    /// output (`_[k]` kernel, `_[j]` JIT, `_[i]` inlined, as Brendan Gregg's
    /// stackcollapse-perf.pl marks them).
    public enum Kind: UInt8, Sendable {
        /// In a file mapping, named (or not) from the file.
        case native = 0
        /// Kernel text, named from /proc/kallsyms.
        case kernel = 1
        /// In anonymous executable memory, named from a perf map (`/tmp/perf-PID.map`).
        case jit = 2
        /// In no mapping the recording knew.
        case unknown = 3
    }

    public var kind: Kind
    /// The file's path, `[kernel.kallsyms]` or `[MODULE]` for the kernel, the
    /// mapping's name (`[anon]`, `[vdso]`, ...) otherwise.
    public var module: String
    /// User code: the offset of the address in the module's file (what
    /// `module+0xOFFSET` prints). Kernel code: the address.
    public var moduleOffset: UInt64
    /// Innermost first; never empty.
    public var frames: [SymbolizedFrame]

    public init(kind: Kind, module: String, moduleOffset: UInt64, frames: [SymbolizedFrame]) {
        self.kind = kind; self.module = module; self.moduleOffset = moduleOffset; self.frames = frames
    }

    /// True when the innermost frame has a real name (not `module+0xOFFSET`).
    public var isNamed: Bool { frames.first.map { !$0.function.hasPrefix("[") && !$0.function.contains("+0x") } ?? false }
}

/// Turns addresses into names: ELF symbol tables (`.symtab`, else
/// `.dynsym`; PLT stubs as `name@plt`), DWARF (inline frames, file and
/// line, names the symbol table lacks), separate debug files (by build-id,
/// `.gnu_debuglink`, then debuginfod), `/proc/kallsyms` for the kernel and
/// perf maps for JIT code; names demangled by ``Demangler``.
///
/// Files are opened once per build-id (or path and inode, for a file
/// without one) and kept; each module remembers what each address gave, so
/// a warm lookup is two hash lookups. Not thread-safe: one thread uses a
/// symbolizer (libdw's handles are not thread-safe either).
///
/// An address is never given a blank or a guessed name: when nothing
/// covers it, it is `module+0xOFFSET` (the file offset, which
/// `addr2line -e module` needs translated to an address, or which pprof's
/// mapping gives back).
public final class Symbolizer {
    public struct Options: Sendable {
        /// Where distributions install separate debug files.
        public var debugRoot = "/usr/lib/debug"
        /// Read DWARF for inline frames and lines (the slow part of a first lookup).
        public var useDWARF = true
        /// Fetches debug files that are not installed (``DebuginfodClient/fromEnvironment(_:)``).
        public var debuginfod: DebuginfodClient? = nil
        /// The kernel's symbols; nil reads /proc/kallsyms when first needed.
        public var kernelSymbols: KernelSymbols? = nil
        /// Where the core kernel's symbols are kept for the boot; nil: not kept.
        public var kernelSymbolDirectory: String? = KernelSymbols.standardDirectory
        /// The most of a process's perf map read (its end; see ``PerfMap/read(pid:maxBytes:)``).
        public var perfMapMaxBytes = PerfMap.defaultMaxBytes
        /// Where decompressed copies of compressed DWARF are kept; nil: none.
        public var dwarfCache: DWARFCache? = DWARFCache.standard
        public init() {}
    }

    public let options: Options
    private var modules: [ModuleKey: SymbolizedModule?] = [:]
    private var perfMaps: [Int32: (map: PerfMap?, readAt: UInt64, size: Int, modified: Int)] = [:]
    /// Perf maps not read because their owner was neither the process's
    /// user nor root (``PerfMap/read(pid:maxBytes:)``), and the lines of maps
    /// over ``Options/perfMapMaxBytes`` left unread: counted, and said once
    /// per process in ``unavailable``.
    public private(set) var perfMapsRefused = 0
    public private(set) var perfMapBytesSkipped = 0
    private var perfMapWarned: Set<Int32> = []
    private var kernelCache: [UInt64: SymbolizedLocation] = [:]
    /// When each module was last used (``trim(toBytes:)`` drops the oldest).
    private var lastUse: [ModuleKey: UInt64] = [:]
    private var useClock: UInt64 = 0
    /// The core kernel's symbols, kept per boot (``KernelSymbols/loadCore(keptIn:kallsyms:bootID:)``);
    /// the whole of /proc/kallsyms is read only for an address outside the core text.
    private lazy var kernelCore: (symbols: KernelSymbols, kept: Bool)? =
        options.kernelSymbols.map { ($0, false) } ?? KernelSymbols.loadCore(keptIn: options.kernelSymbolDirectory)
    private lazy var kernelAll: KernelSymbols? = options.kernelSymbols ?? KernelSymbols.load()

    private func kernelLookup(_ address: KernelAddress) -> (symbol: KernelSymbols.Symbol, offset: UInt64)? {
        guard let core = kernelCore else { return nil }
        if core.symbols.isCoreText(address) || !core.kept { return core.symbols.lookup(address) }
        return kernelAll?.lookup(address)
    }
    /// Files that could not be read, with the reason, once each.
    public private(set) var unavailable: [String] = []

    public init(options: Options = Options()) {
        self.options = options
    }

    private struct ModuleKey: Hashable {
        var buildID: BuildID?
        var path: String
        var inode: UInt64
    }

    // MARK: - User addresses

    /// The frames at `address` of process `pid`, which maps it with
    /// `mapping` (nil: no mapping of the process holds it).
    ///
    /// A return address (every frame but a stack's innermost) is looked up
    /// at `address - 1`, inside the call instruction, so that its line and
    /// inline frames are those of the call and not of the instruction after
    /// it, which may belong to another line or even another function after
    /// a call to a `noreturn` function (as perf, pprof and gdb do).
    ///
    /// The file is opened through `/proc/PID/root` and `/proc/PID/map_files`
    /// while the process lives (`live`), else, or when those fail, at its
    /// recorded path, provided it still has the recorded build-id.
    public func symbolize(_ address: ProcessAddress, isReturnAddress: Bool, pid: Int32, mapping: Mapping?,
                          live: Bool = true) -> SymbolizedLocation {
        let lookup = isReturnAddress ? ProcessAddress(address.rawValue &- 1) : address
        guard let mapping else {
            if let jit = jitLocation(lookup, pid: pid, module: "[unknown]") { return jit }
            return unknown(module: "[unknown]", offset: address.rawValue, kind: .unknown)
        }
        let fileOffset = mapping.fileOffset.rawValue &+ (address.rawValue &- mapping.start.rawValue)
        if !mapping.isFile && mapping.path != "[vdso]" {
            let name = mapping.path.isEmpty ? "[anon]" : mapping.path
            if let jit = jitLocation(lookup, pid: pid, module: name) { return jit }
            return unknown(module: name, offset: address.rawValue &- mapping.start.rawValue, kind: .native)
        }
        guard let module = module(for: mapping, pid: pid, live: live),
              let stated = module.file.statedAddress(of: lookup, in: mapping) else {
            return unknown(module: ModuleFiles.plainPath(of: mapping), offset: fileOffset, kind: .native)
        }
        var frames = module.frames(at: stated)
        // A return address that does not follow a call: the handler frame of
        // a signal returns to the first byte of the restorer (glibc's
        // __restore_rt, whose CFI starts at the nop before it so that
        // unwinders find it at address - 1, while its symbol does not).
        if frames.isEmpty, isReturnAddress, let exact = module.file.statedAddress(of: address, in: mapping) {
            frames = module.frames(at: exact)
        }
        if frames.isEmpty {
            return unknown(module: ModuleFiles.plainPath(of: mapping), offset: fileOffset, kind: .native)
        }
        return SymbolizedLocation(kind: .native, module: ModuleFiles.plainPath(of: mapping), moduleOffset: fileOffset, frames: frames)
    }

    /// The module for `mapping`, opened once per build-id; nil (remembered)
    /// when its file cannot be read.
    public func module(for mapping: Mapping, pid: Int32?, live: Bool) -> SymbolizedModule? {
        let key = ModuleKey(buildID: mapping.buildID, path: mapping.buildID == nil ? mapping.path : "",
                            inode: mapping.buildID == nil ? mapping.inode : 0)
        useClock &+= 1
        if let known = modules[key] {
            lastUse[key] = useClock
            return known
        }
        let module: SymbolizedModule?
        if mapping.path == "[vdso]" {
            module = ModuleFiles.vdso.map { SymbolizedModule(file: $0, debugFile: nil, options: options) }
        } else {
            let candidates = ModuleFiles.candidates(for: mapping, pid: live ? pid : nil, includePlainPath: true)
            switch ModuleFiles.open(candidates, expecting: mapping.buildID, mapping: mapping) {
            case .success(let elf):
                let m = SymbolizedModule(file: elf, debugFile: debugFile(for: elf, buildID: mapping.buildID), options: options)
                unavailable += m.problems
                module = m
            case .failure(let why):
                unavailable.append("\(ModuleFiles.plainPath(of: mapping)): \(why.reason)")
                module = nil
            }
        }
        modules[key] = module
        lastUse[key] = useClock
        return module
    }

    /// Bytes the symbolizer holds beyond mapped files (an estimate): its
    /// modules' indexes and remembered answers, and the kernel's answers.
    public var memoryBytes: Int {
        modules.values.reduce(0) { $0 + ($1?.memoryBytes ?? 0) } + kernelCache.count * 160
            + perfMaps.values.reduce(0) { $0 + 64 + ($1.map?.memoryBytes ?? 0) }
    }

    /// A mark of "now" in use order, for ``dropUnused(since:)``.
    public var useMark: UInt64 { useClock }

    /// Drops the modules not used since `mark` (a ``useMark`` taken
    /// earlier), and the perf maps and kernel answers: a long-running caller
    /// lets go of the files of processes that are gone. Returns how many
    /// modules were dropped.
    @discardableResult
    public func dropUnused(since mark: UInt64) -> Int {
        var dropped = 0
        for (key, used) in lastUse where used < mark {
            modules[key] = nil
            lastUse[key] = nil
            dropped += 1
        }
        return dropped
    }

    /// Drops the least recently used modules (and the kernel's remembered
    /// answers, and perf maps of processes) until ``memoryBytes`` is at most
    /// `bytes`; a module dropped is read again when next needed (its DWARF
    /// from ``Options/dwarfCache``). A long-running caller (`sprof agent`)
    /// calls it between windows. Returns the modules dropped.
    @discardableResult
    public func trim(toBytes bytes: Int) -> Int {
        if memoryBytes <= bytes { return 0 }
        kernelCache.removeAll()
        perfMaps.removeAll()
        perfMapWarned.removeAll()
        if unavailable.count > 1000 { unavailable.removeAll() }
        var dropped = 0
        var total = memoryBytes
        for (key, _) in lastUse.sorted(by: { $0.value < $1.value }) where total > bytes {
            total -= modules[key]??.memoryBytes ?? 0
            modules[key] = nil
            lastUse[key] = nil
            dropped += 1
        }
        return dropped
    }

    /// A module for a file read directly (no process): for tools and tests.
    public func module(path: String) throws(SymbolError) -> SymbolizedModule {
        let elf: ELFFile
        do { elf = try ELFFile(path: path) } catch { throw .elf(error) }
        return SymbolizedModule(file: elf, debugFile: debugFile(for: elf, buildID: try? elf.buildID()), options: options)
    }

    /// The separate debug file, when the file itself lacks `.symtab` or
    /// `.debug_info`: installed (by build-id or `.gnu_debuglink`), else
    /// fetched through debuginfod.
    private func debugFile(for elf: ELFFile, buildID: BuildID?) -> ELFFile? {
        let hasSymtab = elf.sectionHeaders.contains { $0.type == .symbolTable && $0.fileSize > 0 }
        let hasDWARF = elf.sectionIndex(named: ".debug_info") != nil
        if hasSymtab && (hasDWARF || !options.useDWARF) { return nil }
        if let local = ModuleFiles.debugFile(for: elf, buildID: buildID, having: [".debug_info", ".symtab"],
                                             debugRoot: options.debugRoot) {
            return local
        }
        guard let client = options.debuginfod, let id = buildID ?? (try? elf.buildID()) else { return nil }
        do {
            guard let path = try client.debugInfoPath(for: id) else { return nil }
            return try? ELFFile(path: path)
        } catch {
            unavailable.append("debuginfod, build-id \(id): \(error)")
            return nil
        }
    }

    private func jitLocation(_ address: ProcessAddress, pid: Int32, module: String) -> SymbolizedLocation? {
        let now = DispatchTime.now().uptimeNanoseconds
        var entry = perfMaps[pid]
        // A JIT appends to its map as it compiles: on a miss, read it again,
        // at most once a second, and only if it changed (size or time).
        if let known = entry, known.map?.lookup(address) == nil, now &- known.readAt > 1_000_000_000 {
            if let stamp = PerfMap.stamp(pid: pid), stamp.size == known.size, stamp.modified == known.modified {
                perfMaps[pid]!.readAt = now
            } else {
                entry = nil
            }
        }
        if entry == nil {
            let read = PerfMap.read(pid: pid, maxBytes: options.perfMapMaxBytes)
            if let refusal = read.refusal {
                perfMapsRefused += 1
                if perfMapWarned.insert(pid).inserted { unavailable.append(refusal) }
            } else if read.skippedBytes > 0 {
                perfMapBytesSkipped += read.skippedBytes
                if perfMapWarned.insert(pid).inserted, let path = read.path {
                    unavailable.append("\(path) is \(read.size) bytes: read its last \(options.perfMapMaxBytes) (the newest code); "
                                       + "\(read.skippedBytes) bytes of older lines skipped")
                }
            }
            entry = (read.map, now, read.size, read.modified)
            perfMaps[pid] = entry
        }
        guard let hit = entry?.map?.lookup(address) else { return nil }
        return SymbolizedLocation(kind: .jit, module: module, moduleOffset: hit.offset,
                                  frames: [SymbolizedFrame(function: hit.name, systemName: hit.name)])
    }

    /// Forgets a process's perf map (it exited, or a fresher read is wanted).
    public func forgetPerfMap(pid: Int32) {
        perfMaps[pid] = nil
        perfMapWarned.remove(pid)
    }

    private func unknown(module: String, offset: UInt64, kind: SymbolizedLocation.Kind) -> SymbolizedLocation {
        let base = module.split(separator: "/").last.map(String.init) ?? module
        let name = "\(base)+0x\(String(offset, radix: 16))"
        return SymbolizedLocation(kind: kind, module: module, moduleOffset: offset,
                                  frames: [SymbolizedFrame(function: name, systemName: name)])
    }

    // MARK: - Kernel addresses

    /// The kernel function at `address`, from /proc/kallsyms, with its
    /// module (`[MODULE]`), or `[kernel.kallsyms]+0xADDRESS` when kallsyms
    /// is unreadable (addresses hidden without CAP_SYSLOG) or has nothing at
    /// or below it.
    public func symbolize(kernel address: KernelAddress, isReturnAddress: Bool) -> SymbolizedLocation {
        if let hit = kernelCache[address.rawValue] { return hit }
        let lookup = KernelAddress(isReturnAddress ? address.rawValue &- 1 : address.rawValue)
        let location: SymbolizedLocation
        if let (symbol, _) = kernelLookup(lookup) {
            location = SymbolizedLocation(kind: .kernel, module: symbol.module.map { "[\($0)]" } ?? "[kernel.kallsyms]",
                                          moduleOffset: address.rawValue,
                                          frames: [SymbolizedFrame(function: symbol.name, systemName: symbol.name)])
        } else {
            let name = "[kernel.kallsyms]+0x\(String(address.rawValue, radix: 16))"
            location = SymbolizedLocation(kind: .kernel, module: "[kernel.kallsyms]", moduleOffset: address.rawValue,
                                          frames: [SymbolizedFrame(function: name, systemName: name)])
        }
        kernelCache[address.rawValue] = location
        return location
    }
}

/// The symbols of one ELF file (and of its separate debug file): a symbol
/// table, PLT stubs and DWARF, with the frames of every address asked for
/// remembered.
public final class SymbolizedModule {
    /// The file mapped into processes (its `PT_LOAD` segments translate addresses).
    public let file: ELFFile
    /// The separate debug file used, if any.
    public let debugFile: ELFFile?
    /// The function symbols: the file's `.symtab`, else the debug file's,
    /// else the file's `.dynsym`.
    public let symbols: ELFSymbols?
    public let plt: PLTStubs
    /// What could not be read (a corrupt symbol table), in words; the
    /// module still names what it can, and `module+0xOFFSET` the rest.
    public let problems: [String]
    private let dwarf: DWARFSource?
    private var cache: [UInt64: [SymbolizedFrame]] = [:]
    /// Demangled, version-stripped names by symbol index.
    private var names: [Int: (display: String, system: String)] = [:]

    init(file: ELFFile, debugFile: ELFFile?, options: Symbolizer.Options) {
        self.file = file
        self.debugFile = debugFile
        var problems: [String] = []
        func read(_ f: ELFFile) -> ELFSymbols? {
            do { return try ELFSymbols(f) } catch { problems.append("\(error)"); return nil }
        }
        let own = read(file)
        if own?.table == .symtab {
            symbols = own
        } else if let debugFile, let fromDebug = read(debugFile), fromDebug.table == .symtab {
            symbols = fromDebug
        } else {
            symbols = own
        }
        self.problems = problems
        plt = PLTStubs(file)
        if options.useDWARF {
            let source = file.sectionIndex(named: ".debug_info") != nil ? file : debugFile
            dwarf = source.flatMap { s in
                let info = s.sectionIndex(named: ".debug_info").map { s.sectionHeaders[$0] }
                let compressed = info.map { $0.flags.rawValue & 0x800 != 0 } ?? false  // SHF_COMPRESSED
                return DWARFSource(path: s.path, compressed: compressed, buildID: compressed ? (try? s.buildID()) ?? nil : nil,
                                   cache: options.dwarfCache)
            }
        } else {
            dwarf = nil
        }
    }

    /// True when DWARF (inline frames and lines) is available.
    public var hasDWARF: Bool { dwarf != nil }

    /// The file DWARF is read from: the binary, its debug file, or the
    /// decompressed copy of one in ``Symbolizer/Options/dwarfCache``.
    public var dwarfPath: String? { dwarf?.readPath }

    /// Bytes this module holds beyond the mapped files: the symbol index
    /// (40 bytes a symbol), PLT stubs, and remembered answers (an estimate).
    public var memoryBytes: Int {
        (symbols?.count ?? 0) * 40 + plt.stubs.count * 48 + cache.count * 96
            + names.count * 64 + cache.values.reduce(0) { $0 + $1.count * 48 }
    }

    /// The frames at `address` (a stated address of ``file``), innermost
    /// first; empty when nothing names it.
    public func frames(at address: StatedAddress) -> [SymbolizedFrame] {
        if let known = cache[address.rawValue] { return known }
        let frames = resolve(address)
        cache[address.rawValue] = frames
        return frames
    }

    private func resolve(_ address: StatedAddress) -> [SymbolizedFrame] {
        if let stub = plt.lookup(address) {
            let name = Self.withoutVersion(stub.target)
            return [SymbolizedFrame(function: Demangler.demangle(name) + "@plt", systemName: name + "@plt")]
        }
        var symbolName: (display: String, system: String)?
        if let symbols, let i = symbols.index(containing: address) {
            if let n = names[i] {
                symbolName = n
            } else {
                let system = Self.withoutVersion(symbols[i].name)
                let n = (Demangler.demangle(system), system)
                names[i] = n
                symbolName = n
            }
        }
        var frames: [SymbolizedFrame] = []
        if let dwarf {
            for f in dwarf.frames(at: address) {
                let system = f.name.map(Self.withoutVersion)
                frames.append(SymbolizedFrame(function: system.map(Demangler.demangle) ?? "", systemName: system ?? "",
                                              file: f.file, line: f.line, isInlined: f.isInlined))
            }
        }
        if frames.isEmpty {
            guard let symbolName else { return [] }
            return [SymbolizedFrame(function: symbolName.display, systemName: symbolName.system)]
        }
        // The outermost (physical) function: the symbol table's name, which
        // is what nm and perf print; DWARF's when the table has none.
        let last = frames.count - 1
        if let symbolName {
            frames[last].function = symbolName.display
            frames[last].systemName = symbolName.system
        }
        // A DWARF frame without a name (assembly with line info) and no symbol: nothing names it.
        if frames[last].function.isEmpty { return [] }
        for i in frames.indices where frames[i].function.isEmpty {
            frames[i].function = "[inlined]"
            frames[i].systemName = "[inlined]"
        }
        return frames
    }

    /// `memcpy@@GLIBC_2.14` -> `memcpy`: the version an assembler `.symver`
    /// gave a `.symtab` name is the library's business, not the function's name.
    static func withoutVersion(_ name: String) -> String {
        guard let at = name.firstIndex(of: "@"), at != name.startIndex else { return name }
        return String(name[..<at])
    }
}
