// container: a process that makes itself a small "container" and then turns
// the path of a file it maps into a trap for whoever reads its files as root.
// For ContainerFileTests (Tests/KernelTests).
//
// Recipe: gcc -O2 -o container container.c (the test builds it; it needs
// root for unshare, mount and pivot_root).
//
//   container ROOT MODE [TARGET] [UID]
//
// It enters its own mount namespace (unshare(CLONE_NEWNS), mounts made
// private) and makes ROOT its root as runc does (bind-mount ROOT on itself,
// pivot_root(".", "."), detach the old root), so /proc/PID/root is ROOT and
// /proc/PID/maps prints its paths as the container sees them ("/lib.so"). ROOT/lib.so
// must be an ELF file: the container's own. It maps /lib.so PROT_READ|
// PROT_EXEC (as a loader maps code), closes it, then, by MODE:
//   symlink  replaces /lib.so by a symlink to TARGET, an absolute path that
//            names nothing inside ROOT but a file on the host: a reader that
//            resolves /proc/PID/root/lib.so with open(2) lands on the host file;
//   swap     replaces /lib.so by a copy of /other.so (a file inside ROOT with
//            another device/inode than the mapping's);
//   keep     leaves it.
// With UID it then drops to that uid and gid (setresgid/setresuid). It prints
// "mapped=START-END" (hex) and "ready", and sleeps until killed.
#define _GNU_SOURCE
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static void die(const char *what) { perror(what); exit(1); }

static void copy(const char *from, const char *to) {
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_EXCL, 0755);
    if (in < 0 || out < 0) die("copy");
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0) if (write(out, buf, n) != n) die("write");
    close(in); close(out);
}

int main(int argc, char **argv) {
    if (argc < 3) { fprintf(stderr, "usage: container ROOT symlink|swap|keep [TARGET] [UID]\n"); return 2; }
    const char *mode = argv[2];
    if (unshare(CLONE_NEWNS) != 0) die("unshare");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) die("mount private");
    if (mount(argv[1], argv[1], NULL, MS_BIND | MS_REC, NULL) != 0) die("bind mount");
    if (chdir(argv[1]) != 0) die("chdir root");
    if (syscall(SYS_pivot_root, ".", ".") != 0) die("pivot_root");
    if (umount2(".", MNT_DETACH) != 0) die("umount old root");
    if (chdir("/") != 0) die("chdir");

    int fd = open("/lib.so", O_RDONLY);
    if (fd < 0) die("open /lib.so");
    struct stat st;
    if (fstat(fd, &st) != 0) die("fstat");
    void *p = mmap(NULL, st.st_size, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) die("mmap");
    close(fd);

    if (strcmp(mode, "symlink") == 0) {
        if (argc < 4) die("symlink needs TARGET");
        if (unlink("/lib.so") != 0 || symlink(argv[3], "/lib.so") != 0) die("symlink");
    } else if (strcmp(mode, "swap") == 0) {
        if (unlink("/lib.so") != 0) die("unlink");
        copy("/other.so", "/lib.so");
    }
    if (argc >= 5) {
        unsigned id = (unsigned)strtoul(argv[4], NULL, 10);
        if (setresgid(id, id, id) != 0 || setresuid(id, id, id) != 0) die("setresuid");
    }
    // The mapping's page-rounded end, as /proc/PID/maps prints it.
    long page = sysconf(_SC_PAGESIZE);
    unsigned long end = ((unsigned long)p + st.st_size + page - 1) & ~(unsigned long)(page - 1);
    printf("mapped=%lx-%lx\nready\n", (unsigned long)p, end);
    fflush(stdout);
    for (;;) pause();
}
