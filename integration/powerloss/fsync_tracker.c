/*
 * fsync_tracker: an LD_PRELOAD library recording what of each file reached
 * the disk, for elastickv's power-loss test.
 *
 * A kill -9 leaves the page cache intact: everything a process wrote is on
 * "disk" afterwards, synced or not, so no kill test notices a missing
 * fsync. With this library preloaded, every successful fsync/fdatasync of a
 * file is logged with the file's size at that moment, and every creation,
 * rename and unlink with its paths. After killing the processes, the test
 * cuts every file back to its last synced size and deletes files never
 * synced: what a power failure would leave of append-only files (RocksDB's
 * write-ahead log, tables and manifest are written that way). Renames are
 * taken as durable (RocksDB syncs the directory after each).
 *
 * Log lines (to the file named by FSYNC_TRACK_LOG), one write each:
 *   create\t<path>\n   sync\t<path>\t<size>\n
 *   rename\t<from>\t<to>\n   unlink\t<path>\n
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int log_fd = -1;

__attribute__((constructor)) static void open_log(void) {
    const char *path = getenv("FSYNC_TRACK_LOG");
    if (path != NULL && path[0] != '\0') {
        log_fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    }
}

static void record(const char *kind, const char *a, const char *b, long long size) {
    if (log_fd < 0) {
        return;
    }
    char line[4 * PATH_MAX + 64];
    int n;
    if (b != NULL) {
        n = snprintf(line, sizeof line, "%s\t%s\t%s\n", kind, a, b);
    } else if (size >= 0) {
        n = snprintf(line, sizeof line, "%s\t%s\t%lld\n", kind, a, size);
    } else {
        n = snprintf(line, sizeof line, "%s\t%s\n", kind, a);
    }
    if (n > 0 && (size_t)n < sizeof line) {
        /* O_APPEND: one write is one line, whatever the threads do. */
        ssize_t ignored = write(log_fd, line, (size_t)n);
        (void)ignored;
    }
}

/* `path` made absolute against `dirfd` (or the working directory);
 * `buf` holds 2 * PATH_MAX bytes. */
static const char *absolute(int dirfd, const char *path, char *buf) {
    if (path[0] == '/') {
        return path;
    }
    char base[PATH_MAX];
    if (dirfd == AT_FDCWD) {
        if (getcwd(base, sizeof base) == NULL) {
            return path;
        }
    } else {
        char link[64];
        snprintf(link, sizeof link, "/proc/self/fd/%d", dirfd);
        ssize_t len = readlink(link, base, sizeof base - 1);
        if (len < 0) {
            return path;
        }
        base[len] = '\0';
    }
    if (snprintf(buf, 2 * PATH_MAX, "%s/%s", base, path) >= 2 * PATH_MAX) {
        return path;
    }
    return buf;
}

static void note_sync(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t len = readlink(link, path, sizeof path - 1);
    struct stat st;
    if (len < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        return;
    }
    path[len] = '\0';
    record("sync", path, NULL, (long long)st.st_size);
}

typedef int (*sync_fn)(int);
typedef int (*open_fn)(const char *, int, ...);
typedef int (*openat_fn)(int, const char *, int, ...);
typedef int (*rename_fn)(const char *, const char *);
typedef int (*renameat_fn)(int, const char *, int, const char *);
typedef int (*renameat2_fn)(int, const char *, int, const char *, unsigned int);
typedef int (*unlink_fn)(const char *);
typedef int (*unlinkat_fn)(int, const char *, int);

/* The next definition of `name` (libc's), looked up once. */
#define REAL(name, type)                                   \
    static type real_##name;                               \
    if (!real_##name) real_##name = (type)dlsym(RTLD_NEXT, #name)

int fsync(int fd) {
    REAL(fsync, sync_fn);
    int r = real_fsync(fd);
    if (r == 0) note_sync(fd);
    return r;
}

int fdatasync(int fd) {
    REAL(fdatasync, sync_fn);
    int r = real_fdatasync(fd);
    if (r == 0) note_sync(fd);
    return r;
}

/* Whether opening `path` with `flags` starts a new file's contents: it is
 * created, or truncated. Asked before the open. */
static int starts_new(int dirfd, const char *path, int flags) {
    if (!(flags & O_CREAT)) {
        return (flags & O_TRUNC) != 0;
    }
    struct stat st;
    return (flags & O_TRUNC) || fstatat(dirfd, path, &st, 0) != 0;
}

static void note_open(int dirfd, const char *path, int fd, int fresh) {
    char buf[2 * PATH_MAX];
    if (fd >= 0 && fresh) {
        record("create", absolute(dirfd, path, buf), NULL, -1);
    }
}

/* open and friends: the mode argument is there only with O_CREAT or
 * O_TMPFILE. `at` is the directory argument's expression (AT_FDCWD for
 * open and open64), `call` the real call. */
#define OPEN_WRAPPER(name, fn_type, params, at, call)       \
    int name params {                                        \
        REAL(name, fn_type);                                 \
        mode_t mode = 0;                                     \
        if (flags & (O_CREAT | O_TMPFILE)) {                 \
            va_list ap;                                      \
            va_start(ap, flags);                             \
            mode = va_arg(ap, mode_t);                       \
            va_end(ap);                                      \
        }                                                    \
        int fresh = starts_new(at, path, flags);             \
        int fd = call;                                       \
        note_open(at, path, fd, fresh);                      \
        return fd;                                           \
    }

OPEN_WRAPPER(open, open_fn, (const char *path, int flags, ...), AT_FDCWD,
             real_open(path, flags, mode))
OPEN_WRAPPER(open64, open_fn, (const char *path, int flags, ...), AT_FDCWD,
             real_open64(path, flags, mode))
OPEN_WRAPPER(openat, openat_fn, (int dirfd, const char *path, int flags, ...), dirfd,
             real_openat(dirfd, path, flags, mode))
OPEN_WRAPPER(openat64, openat_fn, (int dirfd, const char *path, int flags, ...), dirfd,
             real_openat64(dirfd, path, flags, mode))

int rename(const char *from, const char *to) {
    REAL(rename, rename_fn);
    int r = real_rename(from, to);
    if (r == 0) {
        char a[2 * PATH_MAX], b[2 * PATH_MAX];
        record("rename", absolute(AT_FDCWD, from, a), absolute(AT_FDCWD, to, b), -1);
    }
    return r;
}

int renameat(int fromfd, const char *from, int tofd, const char *to) {
    REAL(renameat, renameat_fn);
    int r = real_renameat(fromfd, from, tofd, to);
    if (r == 0) {
        char a[2 * PATH_MAX], b[2 * PATH_MAX];
        record("rename", absolute(fromfd, from, a), absolute(tofd, to, b), -1);
    }
    return r;
}

int renameat2(int fromfd, const char *from, int tofd, const char *to, unsigned int flags) {
    REAL(renameat2, renameat2_fn);
    int r = real_renameat2(fromfd, from, tofd, to, flags);
    if (r == 0) {
        char a[2 * PATH_MAX], b[2 * PATH_MAX];
        record("rename", absolute(fromfd, from, a), absolute(tofd, to, b), -1);
    }
    return r;
}

int unlink(const char *path) {
    REAL(unlink, unlink_fn);
    int r = real_unlink(path);
    if (r == 0) {
        char a[2 * PATH_MAX];
        record("unlink", absolute(AT_FDCWD, path, a), NULL, -1);
    }
    return r;
}

int unlinkat(int dirfd, const char *path, int flags) {
    REAL(unlinkat, unlinkat_fn);
    int r = real_unlinkat(dirfd, path, flags);
    if (r == 0) {
        char a[2 * PATH_MAX];
        record("unlink", absolute(dirfd, path, a), NULL, -1);
    }
    return r;
}
