// libFuzzer entry point for the ELF reader (Sources/ELF): built by
// bench/fuzz.sh (target "elf") against SprofBase and SprofELF.
//
// Input: a whole ELF file. It is read the way a module load reads it:
// ELFFile(copying:) (the same header decoding as ELFFile(path:)), then every
// section by index and by the names the unwinder and the symbolizer ask for,
// the notes, the build-id, .gnu_debuglink, the PT_LOAD segments' bytes, and
// the address translations of Sources/ELF/AddressTranslation.swift. Every
// call must return or throw an ELFError; error messages are rendered too.
// Tests/SprofTests/FuzzCorpusTests.swift replays the committed corpus
// through the same steps.
import SprofBase
import SprofELF

@_cdecl("LLVMFuzzerTestOneInput")
public func elfFuzzOneInput(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    let elf: ELFFile
    do {
        elf = try ELFFile(copying: UnsafeBufferPointer(start: data, count: size))
    } catch {
        _ = error.description
        return 0
    }
    for i in elf.sectionHeaders.indices.prefix(4096) {
        _ = elf.name(of: elf.sectionHeaders[i])
        do { _ = try elf.section(at: i).bytes.count } catch { _ = error.description }
    }
    for name in [".text", ".eh_frame", ".eh_frame_hdr", ".debug_frame", ".debug_info", ".symtab", ".dynsym",
                 ".gnu_debuglink", ".note.gnu.build-id", ".plt"] {
        do { _ = try elf.section(named: name) } catch { _ = error.description }
    }
    var notes = elf.makeNoteIterator()
    var count = 0
    while count < 100_000 {
        count += 1
        do {
            guard let note = try notes.next() else { break }
            _ = note.owner
            _ = note.isOwned(by: "GNU")
            _ = note.descriptor.count
        } catch {
            _ = error.description
            break
        }
    }
    do { _ = try elf.buildID()?.description } catch { _ = error.description }
    do { _ = try elf.debugLink() } catch { _ = error.description }
    for segment in elf.loadSegments.prefix(256) {
        do { _ = try elf.withContents(of: segment) { $0.count } } catch { _ = error.description }
        for delta: UInt64 in [0, 1, 0xfff, 0x1000] {
            let offset = FileOffset(segment.offset.rawValue &+ delta)
            _ = elf.statedAddress(forFileOffset: offset)
            _ = elf.loadBias(mappingStart: ProcessAddress(0x5555_5555_0000 &+ segment.offset.rawValue & ~0xfff),
                             mappingOffset: FileOffset(offset.rawValue & ~0xfff))
        }
        _ = segment.containsFileOffset(FileOffset(segment.offset.rawValue &+ segment.fileSize))
    }
    _ = elf.statedAddress(forFileOffset: FileOffset(UInt64(size / 2)))
    return 0
}
