import Foundation
import XCTest
@testable import SprofBase
@testable import SprofCapture
@testable import SprofClickHouse
import SprofELF
import SprofProfile
@testable import SprofStore
@testable import SprofSymbols

/// Every file sprof writes is made one way (SprofBase's SafeFile,
/// Sources/Base/SafeWrite.swift): a new temporary file in the destination's
/// directory (`O_CREAT|O_EXCL|O_NOFOLLOW`), mode 0600, renamed over the
/// destination; directories sprof keeps for itself 0700 and refused when they
/// are a symlink or another user's. These tests plant what an attacker in a
/// shared directory would — symlinks at the destination and at a temporary
/// name, hard links, symlinked and foreign directories — on real files, and
/// go through every writer: AtomicFile (profiles, raw recordings, reports),
/// the store, the ClickHouse spool, the kernel-symbol and DWARF caches.
final class OutputSafetyTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "sprof-outputs-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        XCTAssertEqual(mkdir(dir, 0o700), 0, String(cString: strerror(errno)))
    }

    override func tearDownWithError() throws {
        // removeItem removes symlinks, never what they point to.
        try? FileManager.default.removeItem(atPath: dir)
    }

    // MARK: - Helpers

    func contents(_ path: String) -> String? {
        FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
    }

    func lstatOf(_ path: String) -> stat? {
        var st = stat()
        return lstat(path, &st) == 0 ? st : nil
    }

    func isRegularFile(_ path: String) -> Bool { lstatOf(path).map { $0.st_mode & S_IFMT == S_IFREG } ?? false }

    func plantSymlink(_ link: String, to target: String, owner: uid_t? = nil) {
        XCTAssertEqual(symlink(target, link), 0, "symlink \(link): \(String(cString: strerror(errno)))")
        if let owner { XCTAssertEqual(lchown(link, owner, owner), 0, String(cString: strerror(errno))) }
    }

    func makeFile(_ path: String, _ text: String) throws {
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(text.utf8)))
    }

    /// 65534: `nobody` on Debian, standing for "another user".
    static let otherUser: uid_t = 65534

    /// The writers that put given bytes at a given path.
    static let writers: [(name: String, write: @Sendable (String, [UInt8]) throws -> Void)] = [
        ("AtomicFile (profiles, raw recordings, report outputs)", { path, bytes in
            let f = try AtomicFile(destination: path)
            try f.write(bytes)
            try f.commit()
        }),
        ("SafeFile.write (store windows, kernel symbols)", { path, bytes in try SafeFile.write(bytes, to: path) }),
        ("ClickHouse spool", { path, bytes in try ClickHouseSyscalls.writeAtomically(bytes, to: path) }),
    ]

    // MARK: - The destination

    /// A symlink at the destination pointing at a victim file: the victim
    /// is untouched, the destination becomes a regular file with the bytes.
    /// A dangling symlink's target is not created.
    func testSymlinkAtTheDestinationIsReplacedNotFollowed() throws {
        for (i, w) in Self.writers.enumerated() {
            let victim = dir + "/victim-\(i)"
            try makeFile(victim, "precious")
            let dest = dir + "/out-\(i).pb.gz"
            plantSymlink(dest, to: victim)
            try w.write(dest, Array("profile".utf8))
            XCTAssertEqual(contents(victim), "precious", w.name)
            XCTAssertTrue(isRegularFile(dest), "\(w.name): the symlink was replaced by the file")
            XCTAssertEqual(contents(dest), "profile", w.name)

            let dangling = dir + "/dangling-\(i)"
            let nowhere = dir + "/created-through-link-\(i)"
            plantSymlink(dangling, to: nowhere)
            try w.write(dangling, Array("x".utf8))
            XCTAssertFalse(FileManager.default.fileExists(atPath: nowhere), "\(w.name): no file made through a dangling link")
            XCTAssertTrue(isRegularFile(dangling), w.name)
        }
    }

    /// As in /tmp: a sticky, world-writable directory and a symlink another
    /// user planted there. rename(2) replaces the link (root may, in a
    /// sticky directory: CAP_FOWNER); the victim is untouched.
    func testSymlinkPlantedByAnotherUserInAStickyDirectory() throws {
        guard geteuid() == 0 else { throw XCTSkip("planting another user's symlink needs root (lchown)") }
        let shared = dir + "/tmp"
        XCTAssertEqual(mkdir(shared, 0o777), 0)
        XCTAssertEqual(chmod(shared, 0o1777), 0)
        let victim = dir + "/etc-shadow"
        try makeFile(victim, "root:secret")
        for (i, w) in Self.writers.enumerated() {
            let dest = shared + "/sprof-\(i).pb.gz"
            plantSymlink(dest, to: victim, owner: Self.otherUser)
            try w.write(dest, Array("profile".utf8))
            XCTAssertEqual(contents(victim), "root:secret", w.name)
            XCTAssertTrue(isRegularFile(dest), w.name)
            XCTAssertEqual(lstatOf(dest)?.st_uid, 0, "\(w.name): root's file, not the planted link")
        }
    }

    /// A directory on the way that is a symlink owned by another user is
    /// refused, naming it; the same link owned by root is followed.
    func testDirectoryThatIsAnotherUsersSymlinkIsRefused() throws {
        guard geteuid() == 0 else { throw XCTSkip("planting another user's symlink needs root (lchown)") }
        let shared = dir + "/tmp"
        XCTAssertEqual(mkdir(shared, 0o777), 0)
        XCTAssertEqual(chmod(shared, 0o1777), 0)
        let elsewhere = dir + "/etc"
        XCTAssertEqual(mkdir(elsewhere, 0o755), 0)
        let link = shared + "/reports"
        plantSymlink(link, to: elsewhere, owner: Self.otherUser)
        let dest = link + "/x.pb.gz"
        XCTAssertThrowsError(try AtomicFile(destination: dest)) { e in
            guard case .unsafeOutput(.untrustedSymlink(dest, link, Self.otherUser, elsewhere))? = e as? CaptureError else {
                return XCTFail("\(e)")
            }
            XCTAssertTrue("\(e)".hasPrefix("cannot write \(dest): the directory \(link) is a symlink (to \(elsewhere)) owned by uid 65534; refusing"), "\(e)")
        }
        XCTAssertThrowsError(try SafeFile.write([1], to: dest))
        XCTAssertThrowsError(try ClickHouseSyscalls.writeAtomically([1], to: dest)) { e in
            guard case .unsafeSpool(.untrustedSymlink)? = e as? ClickHouseError else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: elsewhere), [], "nothing written through the link")

        XCTAssertEqual(lchown(link, 0, 0), 0)
        try SafeFile.write(Array("ok".utf8), to: dest)
        XCTAssertEqual(contents(elsewhere + "/x.pb.gz"), "ok", "root's own symlink is followed")
    }

    /// A symlink (or anything) at the temporary file's name is never
    /// opened: O_CREAT|O_EXCL|O_NOFOLLOW fails with EEXIST. The writers use
    /// 64 random bits in the name; here the name is given, to plant at it.
    func testSymlinkAtTheTemporaryNameIsNotFollowed() throws {
        let victim = dir + "/victim"
        try makeFile(victim, "precious")
        let nowhere = dir + "/would-be-created"
        plantSymlink(dir + "/.planted", to: victim)
        plantSymlink(dir + "/.dangling", to: nowhere)
        let d = try SafeFile.Destination(dir + "/out.pb.gz")
        defer { d.close() }
        for name in [".planted", ".dangling"] {
            XCTAssertThrowsError(try d.createTemporary(name: name)) { e in
                XCTAssertEqual((e as? SafeWriteError)?.errno, EEXIST, "\(e)")
            }
        }
        XCTAssertEqual(contents(victim), "precious")
        XCTAssertFalse(FileManager.default.fileExists(atPath: nowhere))
        // And the names the writers choose are not predictable.
        let a = try d.createTemporary(), b = try d.createTemporary()
        defer { close(a.fd); close(b.fd); d.remove(a.name); d.remove(b.name) }
        XCTAssertNotEqual(a.name, b.name)
        XCTAssertTrue(a.name.hasPrefix(".out.pb.gz.tmp-\(getpid())-"), a.name)
        XCTAssertGreaterThanOrEqual(a.name.count - ".out.pb.gz.tmp-\(getpid())-".count, 8, "a random tag: \(a.name)")
    }

    /// An existing destination is replaced by rename (a new inode), never
    /// truncated and rewritten: a hard link to the old file keeps the old
    /// bytes.
    func testExistingDestinationIsReplacedNeverTruncated() throws {
        for (i, w) in Self.writers.enumerated() {
            let dest = dir + "/profile-\(i).pb.gz"
            let hardLink = dir + "/someone-elses-link-\(i)"
            try makeFile(dest, "old profile")
            XCTAssertEqual(link(dest, hardLink), 0)
            let before = try XCTUnwrap(lstatOf(dest)).st_ino
            try w.write(dest, Array("new".utf8))
            XCTAssertNotEqual(try XCTUnwrap(lstatOf(dest)).st_ino, before, "\(w.name): a new file, renamed into place")
            XCTAssertEqual(contents(dest), "new", w.name)
            XCTAssertEqual(contents(hardLink), "old profile", "\(w.name): the old file was not written")
        }
    }

    // MARK: - Modes

    /// 0600 files, 0700 directories, set by the code: with umask 0 nothing
    /// narrows a wider mode.
    func testFilesAre0600AndDirectories0700WhateverTheUmask() throws {
        let old = umask(0)
        defer { umask(old) }
        func mode(_ p: String) -> mode_t? { lstatOf(p).map { $0.st_mode & 0o7777 } }
        for (i, w) in Self.writers.enumerated() {
            let dest = dir + "/mode-\(i)"
            try w.write(dest, [1, 2, 3])
            XCTAssertEqual(mode(dest), 0o600, w.name)
        }
        let storeDir = dir + "/state/store"
        let store = try ProfileStore(directory: storeDir)
        var b = ProfileBuilder(sampleTypes: [.init("samples", "count")])
        b.setTime(startNanos: 1_700_000_000_000_000_000, durationNanos: 10_000_000_000)
        let f = b.function(name: "main", systemName: "main", file: "app.c")
        let l = b.location(mappingID: 0, address: 0x1000, lines: [.init(functionID: f, line: 1)])
        b.addSample(locationIDs: [l], values: [1], labels: [])
        let window = try store.write(b.profile, host: "h")
        XCTAssertEqual(mode(window), 0o600, "store window")
        XCTAssertEqual(mode(SafeFile.split(window).0), 0o700, "day directory")
        XCTAssertEqual(mode(storeDir), 0o700, "store directory")
        XCTAssertEqual(mode(dir + "/state"), 0o700, "its parent, made too")

        let spool = dir + "/spool/rejected"
        try ClickHouseSyscalls.makeDirectories(spool)
        XCTAssertEqual(mode(spool), 0o700)
        XCTAssertEqual(mode(dir + "/spool"), 0o700)

        let kallsyms = dir + "/kallsyms.txt"
        try makeFile(kallsyms, "ffffffff81000000 T _stext\nffffffff81000100 T schedule\nffffffff81100000 T _etext\n")
        let keep = dir + "/run/sprof"
        XCTAssertNotNil(KernelSymbols.loadCore(keptIn: keep, kallsyms: kallsyms, bootID: "boot"))
        XCTAssertEqual(mode(keep), 0o700, "kernel-symbol directory")
        XCTAssertEqual(mode(keep + "/kallsyms-boot.bin"), 0o600, "kept kernel symbols")
    }

    // MARK: - Directories sprof keeps for itself

    /// /run/sprof, the caches, the store, the spool: a symlink there is
    /// refused with an error saying so (whoever owns it), and nothing is
    /// written where it points.
    func testPrivateDirectoryThatIsASymlinkIsRefused() throws {
        let victim = dir + "/victim-dir"
        XCTAssertEqual(mkdir(victim, 0o700), 0)
        let link = dir + "/sprof"
        plantSymlink(link, to: victim)

        XCTAssertThrowsError(try SafeFile.makePrivateDirectory(link)) { e in
            XCTAssertEqual(e as? SafeWriteError, .privateDirectoryIsSymlink(directory: link, owner: geteuid(), target: victim))
            XCTAssertTrue("\(e)".hasPrefix("\(link) is a symlink (to \(victim), owned by uid \(geteuid())); refusing"), "\(e)")
        }
        XCTAssertThrowsError(try ProfileStore(directory: link)) { e in
            guard case .unsafe(.privateDirectoryIsSymlink)? = e as? StoreError else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("is a symlink"), "\(e)")
        }
        XCTAssertThrowsError(try ClickHouseSyscalls.makeDirectories(link)) { e in
            guard case .unsafeSpool(.privateDirectoryIsSymlink)? = e as? ClickHouseError else { return XCTFail("\(e)") }
        }
        // The caches are best effort: no file, no error, the answer unchanged.
        let kallsyms = dir + "/kallsyms.txt"
        try makeFile(kallsyms, "ffffffff81000000 T _stext\nffffffff81000100 T schedule\nffffffff81100000 T _etext\n")
        let loaded = try XCTUnwrap(KernelSymbols.loadCore(keptIn: link, kallsyms: kallsyms, bootID: "boot"))
        XCTAssertFalse(loaded.kept)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: victim), [], "nothing written through the link")
        XCTAssertTrue(lstatOf(link).map { $0.st_mode & S_IFMT == S_IFLNK } ?? false, "the link is left alone")

        // A regular file where a directory should be.
        try makeFile(dir + "/file", "")
        XCTAssertThrowsError(try SafeFile.makePrivateDirectory(dir + "/file/sub")) { e in
            XCTAssertEqual(e as? SafeWriteError, .notADirectory(dir + "/file"))
        }
    }

    /// A directory another user owns, or one others can write to, is not
    /// taken for sprof's own.
    func testPrivateDirectoryOfAnotherUserOrOpenToOthersIsRefused() throws {
        let open = dir + "/open"
        XCTAssertEqual(mkdir(open, 0o700), 0)
        XCTAssertEqual(chmod(open, 0o777), 0)
        XCTAssertThrowsError(try SafeFile.makePrivateDirectory(open)) { e in
            XCTAssertEqual(e as? SafeWriteError, .privateDirectoryOpen(directory: open, mode: UInt32(S_IFDIR) | 0o777))
            XCTAssertTrue("\(e)".contains("writable by other users (mode 0777)"), "\(e)")
        }
        guard geteuid() == 0 else { throw XCTSkip("a directory of another user needs root (chown)") }
        let foreign = dir + "/foreign"
        XCTAssertEqual(mkdir(foreign, 0o700), 0)
        XCTAssertEqual(chown(foreign, Self.otherUser, Self.otherUser), 0)
        XCTAssertThrowsError(try SafeFile.makePrivateDirectory(foreign)) { e in
            XCTAssertEqual(e as? SafeWriteError, .privateDirectoryForeign(directory: foreign, owner: Self.otherUser, user: 0))
            XCTAssertTrue("\(e)".contains("owned by uid 65534, not by uid 0"), "\(e)")
        }
        XCTAssertThrowsError(try ProfileStore(directory: foreign + "/store")) { e in
            guard case .unsafe(.privateDirectoryForeign(foreign, Self.otherUser, 0))? = e as? StoreError else { return XCTFail("\(e)") }
        }
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: foreign), [], "no store made inside another user's directory")
        // Nor under a world-writable directory without the sticky bit.
        XCTAssertThrowsError(try SafeFile.makePrivateDirectory(open + "/cache")) { e in
            XCTAssertEqual(e as? SafeWriteError, .privateDirectoryOpen(directory: open, mode: UInt32(S_IFDIR) | 0o777))
        }
        XCTAssertEqual(chmod(open, 0o1777), 0)
        XCTAssertNoThrow(try SafeFile.makePrivateDirectory(open + "/cache"), "sticky, as /tmp: others cannot move ours away")
    }

    // MARK: - The caches

    /// The kept kernel symbols: a symlink planted at the file's name is
    /// replaced, not followed; a file another user planted is not read.
    func testKernelSymbolCacheWritesThroughSafeFile() throws {
        let kallsyms = dir + "/kallsyms.txt"
        try makeFile(kallsyms, "ffffffff81000000 T _stext\nffffffff81000100 T schedule\nffffffff81100000 T _etext\n")
        let keep = dir + "/keep"
        try SafeFile.makePrivateDirectory(keep)
        let victim = dir + "/victim"
        try makeFile(victim, "precious")
        let file = keep + "/kallsyms-boot.bin"
        plantSymlink(file, to: victim)
        let first = try XCTUnwrap(KernelSymbols.loadCore(keptIn: keep, kallsyms: kallsyms, bootID: "boot"))
        XCTAssertFalse(first.kept, "a symlink is not read as the kept file")
        XCTAssertEqual(contents(victim), "precious")
        XCTAssertTrue(isRegularFile(file))
        XCTAssertTrue(try XCTUnwrap(KernelSymbols.loadCore(keptIn: keep, kallsyms: "/nonexistent", bootID: "boot")).kept)

        guard geteuid() == 0 else { return }
        XCTAssertEqual(chown(file, Self.otherUser, Self.otherUser), 0)
        XCTAssertNil(KernelSymbols.loadCore(keptIn: keep, kallsyms: "/nonexistent", bootID: "boot"),
                     "a file another user owns is not trusted for kernel names")
    }

    /// The DWARF cache: 0700 directory, 0600 file, a symlink planted at
    /// `<build-id>.debug` replaced (and not read), a symlinked cache
    /// directory not written to.
    func testDWARFCacheWritesThroughSafeFile() throws {
        let f = try SymbolizerTests.fixtures()
        let path = try f.path("c_inline_gz")
        let id = try XCTUnwrap(try ELFFileBuildID(path))
        let victim = dir + "/victim"
        try makeFile(victim, "precious")

        let cache = dir + "/cache/dwarf"
        try SafeFile.makePrivateDirectory(cache)
        let copy = cache + "/\(id).debug"
        plantSymlink(copy, to: victim)
        var options = Symbolizer.Options()
        options.dwarfCache = DWARFCache(directory: cache)
        let module = try Symbolizer(options: options).module(path: path)
        XCTAssertEqual(module.dwarfPath, path, "the planted link is not read as the cached copy")
        XCTAssertEqual(contents(victim), "precious")
        XCTAssertTrue(isRegularFile(copy), "the copy replaced the link")
        XCTAssertEqual(lstatOf(copy).map { $0.st_mode & 0o777 }, 0o600)
        XCTAssertEqual(try Symbolizer(options: options).module(path: path).dwarfPath, copy, "and is used next time")

        let victimDir = dir + "/victim-dir"
        XCTAssertEqual(mkdir(victimDir, 0o700), 0)
        let linked = dir + "/linked-cache"
        plantSymlink(linked, to: victimDir)
        options.dwarfCache = DWARFCache(directory: linked)
        XCTAssertEqual(try Symbolizer(options: options).module(path: path).dwarfPath, path)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: victimDir), [], "nothing cached through the link")
    }
}

/// The build-id of an ELF file, as the DWARF cache names it.
private func ELFFileBuildID(_ path: String) throws -> String? {
    try ELFFile(path: path).buildID().map { "\($0)" }
}
