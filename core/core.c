#define _XOPEN_SOURCE 700 /* nftw */
#include "core/core.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------------
 * Status codes and per-thread messages */

const char *sl_strerror(int status)
{
    switch (status) {
    case SL_OK:
        return "success";
    case SL_EINVAL:
        return "invalid argument";
    case SL_ENOMEM:
        return "out of memory";
    case SL_ERANGE:
        return "out of range";
    case SL_ELIMIT:
        return "exceeds a device limit";
    case SL_EUNAVAILABLE:
        return "not available";
    case SL_EDEVICE:
        return "device error";
    case SL_EBUILD:
        return "kernel build failed";
    case SL_EIO:
        return "input/output error";
    case SL_EFORMAT:
        return "malformed input";
    case SL_ECONFIG:
        return "invalid configuration";
    case SL_EPROTOCOL:
        return "protocol error";
    case SL_ETIMEOUT:
        return "timed out";
    case SL_EPEER:
        return "peer failed";
    case SL_EUNSUPPORTED:
        return "not supported";
    case SL_EDEADLOCK:
        return "schedule cannot complete";
    case SL_EINTERNAL:
        return "internal error";
    case SL_ENONFINITE:
        return "not a finite number";
    default:
        return "unknown status";
    }
}

size_t sl_dtype_size(int dtype)
{
    static const size_t sizes[SL_DTYPE_COUNT] = {
        [SL_DTYPE_F32] = 4, [SL_DTYPE_F16] = 2, [SL_DTYPE_BF16] = 2, [SL_DTYPE_F64] = 8,
        [SL_DTYPE_I32] = 4, [SL_DTYPE_I64] = 8, [SL_DTYPE_U8] = 1};
    return dtype > 0 && dtype < SL_DTYPE_COUNT ? sizes[dtype] : 0;
}

const char *sl_dtype_name(int dtype)
{
    static const char *names[SL_DTYPE_COUNT] = {
        [SL_DTYPE_F32] = "F32", [SL_DTYPE_F16] = "F16", [SL_DTYPE_BF16] = "BF16",
        [SL_DTYPE_F64] = "F64", [SL_DTYPE_I32] = "I32", [SL_DTYPE_I64] = "I64",
        [SL_DTYPE_U8] = "U8"};
    return dtype > 0 && dtype < SL_DTYPE_COUNT ? names[dtype] : "unknown";
}

static _Thread_local char last_error[2048];

int sl_failv(int status, const char *fmt, va_list ap)
{
    vsnprintf(last_error, sizeof last_error, fmt, ap);
    return status;
}

int sl_fail(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sl_failv(status, fmt, ap);
    va_end(ap);
    return status;
}

int sl_fail_context(int status, const char *fmt, ...)
{
    char old[sizeof last_error];
    memcpy(old, last_error, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(last_error, sizeof last_error, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : SL_MIN((size_t)n, sizeof last_error - 1);
    const char *cause = old[0] ? old : sl_strerror(status);
    size_t room = sizeof last_error - used;
    if (room > 3) {
        memcpy(last_error + used, ": ", 2);
        size_t len = SL_MIN(strlen(cause), room - 3);
        memcpy(last_error + used + 2, cause, len);
        last_error[used + 2 + len] = '\0';
    }
    return status;
}

const char *sl_last_error(void)
{
    return last_error;
}

void sl_clear_error(void)
{
    last_error[0] = '\0';
}

/* ------------------------------------------------------------------------------------------------
 * Logging */

static int log_level = -1;

int sl_log_enabled(enum sl_log_level level)
{
    if (log_level < 0) {
        const char *env = getenv("SLUICE_LOG");
        log_level = SL_LOG_INFO;
        if (env) {
            if (!strcmp(env, "error"))
                log_level = SL_LOG_ERROR;
            else if (!strcmp(env, "warn"))
                log_level = SL_LOG_WARN;
            else if (!strcmp(env, "debug"))
                log_level = SL_LOG_DEBUG;
        }
    }
    return (int)level <= log_level;
}

void sl_log(enum sl_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"error", "warning", "info", "debug"};
    if (!sl_log_enabled(level)) return;
    char line[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sluice: %s: %s\n", names[level], line);
}

/* ------------------------------------------------------------------------------------------------
 * Small helpers */

double sl_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void *sl_alloc(size_t bytes)
{
    void *p = calloc(1, bytes ? bytes : 1);
    if (!p) sl_fail(SL_ENOMEM, "could not allocate %zu bytes of host memory", bytes);
    return p;
}

/* libzmq mallocs every message it receives on its I/O thread and the application frees it on
 * another; with glibc's adaptive thresholds each large block is mapped or trimmed away and the
 * next message faults every page in again. Fixed thresholds keep blocks up to 32 MiB (glibc's
 * largest mmap threshold) and up to 512 MiB of free heap top for reuse. The effect shows in
 * `SLUICE_MALLOC=default sluice bench transport` against the same without it (bench/transport.md).
 */
int sl_tune_malloc(void)
{
#if defined(__GLIBC__)
    const char *v = getenv("SLUICE_MALLOC");
    if (v && !strcmp(v, "default")) return 0;
    return mallopt(M_MMAP_THRESHOLD, 32 << 20) && mallopt(M_TRIM_THRESHOLD, 512 << 20);
#else
    return 0;
#endif
}

size_t sl_mul_size(size_t n, size_t size)
{
    if (n == 0 || size == 0) return 0;
    if (n > SIZE_MAX / size) return 0;
    return n * size;
}

int sl_to_int(double v, int fallback)
{
    return v == v && v > -2147483648.0 && v < 2147483648.0 ? (int)v : fallback;
}

static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *f)
{
    (void)st, (void)type, (void)f;
    if (remove(path) != 0 && errno != ENOENT)
        sl_log(SL_LOG_WARN, "could not remove %s: %s", path, strerror(errno));
    return 0;
}

int sl_remove_tree(const char *dir)
{
    /* Depth first, without following symbolic links out of the tree. */
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS) != 0 && errno != ENOENT)
        return sl_fail(SL_EIO, "could not remove %s: %s", dir, strerror(errno));
    return SL_OK;
}

static const char *file_kind(mode_t mode)
{
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISDIR(mode)) return "a directory";
    if (S_ISSOCK(mode)) return "a socket";
    return "not a regular file";
}

int sl_open_regular(const char *path, size_t max, int *fd, size_t *size)
{
    /* O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer. */
    int f = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (f < 0) return sl_fail(SL_EIO, "cannot open '%s': %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int err = errno;
        close(f);
        return sl_fail(SL_EIO, "cannot read '%s': %s", path, strerror(err));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return sl_fail(SL_EIO,
                       "'%s' is %s, not a regular file (sluice reads configs, data and "
                       "weights only from regular files)",
                       path, file_kind(sb.st_mode));
    }
    if ((uint64_t)sb.st_size > max) {
        close(f);
        return sl_fail(SL_ELIMIT,
                       "'%s' is %llu bytes, more than the %zu bytes such a file may have", path,
                       (unsigned long long)sb.st_size, max);
    }
    fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK);
    *fd = f;
    if (size) *size = (size_t)sb.st_size;
    return SL_OK;
}

int sl_read_file_max(const char *path, size_t max, char **data, size_t *size)
{
    int fd;
    size_t expect;
    SL_TRY(sl_open_regular(path, max, &fd, &expect));
    /* The file may change while it is read: never more than max bytes, whatever its size was. */
    size_t cap = expect + 1, len = 0;
    char *buf = malloc(cap + 1);
    int st =
        buf ? SL_OK : sl_fail(SL_ENOMEM, "out of memory reading '%s' (%zu bytes)", path, expect);
    while (st == SL_OK) {
        if (len == cap) {
            size_t more = cap < max / 2 ? cap * 2 : max + 1;
            char *nb = more > cap ? realloc(buf, more + 1) : NULL;
            if (!nb) {
                st = more > cap
                         ? sl_fail(SL_ENOMEM, "out of memory reading '%s'", path)
                         : sl_fail(SL_ELIMIT, "'%s' grew past %zu bytes while read", path, max);
                break;
            }
            buf = nb;
            cap = more;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) st = sl_fail(SL_EIO, "error reading '%s': %s", path, strerror(errno));
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    if (st == SL_OK && len > max)
        st = sl_fail(SL_ELIMIT, "'%s' grew past %zu bytes while read", path, max);
    if (st != SL_OK) {
        free(buf);
        return st;
    }
    buf[len] = '\0';
    *data = buf;
    if (size) *size = len;
    return SL_OK;
}

int sl_read_file(const char *path, char **data, size_t *size)
{
    return sl_read_file_max(path, SL_READ_FILE_MAX, data, size);
}

/* The test hook of sl_write_all: how many more bytes `fd` (named `name`) may take, or -1 for
 * no limit. */
static long long enospc_room(int fd, const char *name)
{
    const char *hook = getenv("SLUICE_ENOSPC");
    const char *colon = hook ? strrchr(hook, ':') : NULL;
    if (!colon || colon == hook) return -1;
    char want[256];
    snprintf(want, sizeof want, "%.*s", (int)SL_MIN((size_t)(colon - hook), sizeof want - 1), hook);
    if (!strstr(name, want)) return -1;
    struct stat st;
    long long limit = atoll(colon + 1), size = fstat(fd, &st) == 0 ? (long long)st.st_size : 0;
    off_t pos = lseek(fd, 0, SEEK_CUR);
    if (pos > size) size = (long long)pos;
    return size < limit ? limit - size : 0;
}

int sl_write_all(int fd, const char *name, const void *data, size_t len)
{
    const char *p = data;
    long long room = enospc_room(fd, name);
    while (len > 0) {
        size_t chunk = room >= 0 ? (size_t)SL_MIN((long long)len, room) : len;
        if (chunk == 0) return ENOSPC;
        ssize_t n = write(fd, p, chunk);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return errno ? errno : EIO;
        if (n == 0) return ENOSPC;
        p += n;
        len -= (size_t)n;
        if (room >= 0) room -= n;
    }
    return 0;
}

int sl_out_open(sl_out_file *f, const char *path, unsigned mode)
{
    f->fd = -1;
    if (snprintf(f->path, sizeof f->path, "%s", path) >= (int)sizeof f->path)
        return sl_fail(SL_EINVAL, "path too long: '%s'", path);
    snprintf(f->tmp, sizeof f->tmp, "%s.tmp%ld", path, (long)getpid());
    f->fd = open(f->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, (mode_t)mode);
    if (f->fd < 0) return sl_fail(SL_EIO, "cannot write '%s': %s", path, strerror(errno));
    return SL_OK;
}

int sl_out_write(sl_out_file *f, const void *data, size_t len)
{
    if (f->fd < 0) return sl_fail(SL_EIO, "cannot write '%s': not open", f->path);
    int err = sl_write_all(f->fd, f->path, data, len);
    if (err) return sl_fail(SL_EIO, "cannot write '%s': %s", f->path, strerror(err));
    return SL_OK;
}

int sl_out_commit(sl_out_file *f)
{
    if (f->fd < 0) return sl_fail(SL_EIO, "cannot write '%s': not open", f->path);
    int err = fsync(f->fd) != 0 && errno != EINVAL ? errno : 0;
    if (close(f->fd) != 0 && !err) err = errno;
    f->fd = -1;
    if (!err && rename(f->tmp, f->path) != 0) err = errno;
    if (err) {
        unlink(f->tmp);
        return sl_fail(SL_EIO, "cannot write '%s': %s", f->path, strerror(err));
    }
    f->tmp[0] = '\0';
    return SL_OK;
}

void sl_out_abort(sl_out_file *f)
{
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    if (f->tmp[0]) unlink(f->tmp);
    f->tmp[0] = '\0';
}

int sl_write_file(const char *path, const void *data, size_t len, unsigned mode)
{
    sl_out_file f;
    SL_TRY(sl_out_open(&f, path, mode));
    int rc = sl_out_write(&f, data, len);
    if (rc == SL_OK) rc = sl_out_commit(&f);
    sl_out_abort(&f);
    return rc;
}

int sl_mkdir_p(const char *path)
{
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf)
        return sl_fail(SL_EINVAL, "path too long: '%s'", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return sl_fail(SL_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
        *p = '/';
    }
    if (mkdir(buf, 0755) != 0 && errno != EEXIST)
        return sl_fail(SL_EIO, "cannot create directory '%s': %s", buf, strerror(errno));
    return SL_OK;
}
