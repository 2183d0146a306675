/* sluice core: status codes, error messages, logging, timing and small helpers.
 *
 * Every public sluice function that can fail returns an `int` status: SL_OK (0) on success or one
 * of the negative SL_E* codes below. The code says what kind of failure it was; the detailed
 * message (what was wrong and what to do) is kept per thread and read with sl_last_error().
 * Nothing in the library prints an error or aborts on a recoverable failure. */
#ifndef SL_CORE_H
#define SL_CORE_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

enum sl_status {
    SL_OK = 0,
    SL_EINVAL = -1,        /* an argument is invalid (null, zero size, unknown name) */
    SL_ENOMEM = -2,        /* host or device memory could not be allocated */
    SL_ERANGE = -3,        /* an access falls outside a buffer or tensor */
    SL_ELIMIT = -4,        /* a request exceeds a device limit */
    SL_EUNAVAILABLE = -5,  /* a backend, driver, device or library is not available */
    SL_EDEVICE = -6,       /* the driver or device reported an error */
    SL_EBUILD = -7,        /* a kernel or shader failed to build */
    SL_EIO = -8,           /* a file or socket could not be read or written */
    SL_EFORMAT = -9,       /* malformed input: a file, a message, a text form */
    SL_ECONFIG = -10,      /* the configuration is invalid */
    SL_EPROTOCOL = -11,    /* a peer broke the wire protocol */
    SL_ETIMEOUT = -12,     /* a deadline passed */
    SL_EPEER = -13,        /* a peer failed or disappeared */
    SL_EUNSUPPORTED = -14, /* the operation is not supported here */
    SL_EDEADLOCK = -15,    /* a schedule cannot complete */
    SL_EINTERNAL = -16,    /* a bug in sluice: please report it */
    SL_ENONFINITE = -17,   /* a value is NaN or infinite (a loss or gradient: training diverged) */
};

/* Element types. The values are stable: the wire format carries them. */
enum sl_dtype {
    SL_DTYPE_F32 = 1,
    SL_DTYPE_F16 = 2,
    SL_DTYPE_BF16 = 3,
    SL_DTYPE_F64 = 4,
    SL_DTYPE_I32 = 5,
    SL_DTYPE_I64 = 6,
    SL_DTYPE_U8 = 7,
    SL_DTYPE_COUNT
};

/* Bytes per element, 0 for an unknown dtype. */
size_t sl_dtype_size(int dtype);
/* The name safetensors uses ("F32", "BF16", ...), or "unknown". */
const char *sl_dtype_name(int dtype);

/* A short, static description of a status code ("invalid argument"). */
const char *sl_strerror(int status);

/* Records a detailed message for the calling thread and returns `status`, so that failures read
 * `return sl_fail(SL_EINVAL, "batch %d is not a multiple of microbatches %d", b, m);` */
int sl_fail(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_failv(int status, const char *fmt, va_list ap);

/* Prefixes the current message with more context ("loading weights: " + old message) and
 * returns `status` unchanged. */
int sl_fail_context(int status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The calling thread's last detailed message, or the empty string. */
const char *sl_last_error(void);
void sl_clear_error(void);

/* Logging to stderr. The level comes from SLUICE_LOG (error, warn, info, debug); default info. */
enum sl_log_level { SL_LOG_ERROR, SL_LOG_WARN, SL_LOG_INFO, SL_LOG_DEBUG };
void sl_log(enum sl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int sl_log_enabled(enum sl_log_level level);

/* Monotonic time in seconds. */
double sl_now(void);

/* Allocation that records SL_ENOMEM with the size on failure: `if (!(p = sl_alloc(n))) return
 * SL_ENOMEM;` Memory is zeroed. */
void *sl_alloc(size_t bytes);

/* Makes this process keep freed blocks of up to 32 MiB for reuse instead of handing them back to
 * the kernel (glibc's defaults hand back blocks from 128 KiB up, so the next message of that size
 * page-faults all its pages in again); the memory stays with the process for its next use. Called
 * once at start by the sluice command; SLUICE_MALLOC=default leaves glibc's defaults. Returns
 * whether the settings were changed. */
int sl_tune_malloc(void);

/* n * size with overflow detection; returns 0 on overflow (and n or size 0 give 0 too). */
size_t sl_mul_size(size_t n, size_t size);

/* v as an int when it is a finite number in int's range (fractions truncated), else `fallback`:
 * for numbers read from JSON that other processes sent, where a plain cast of NaN or 1e300 would
 * be undefined. */
int sl_to_int(double v, int fallback);

/* Opens `path` for reading when it is a regular file of at most `max` bytes: anything else (a
 * FIFO, which would block; a device such as /dev/zero, which never ends; a directory, a socket)
 * is SL_EIO naming it and what it is, and a larger file SL_ELIMIT naming both sizes. *fd is a
 * blocking, close-on-exec descriptor; *size the file's size. */
int sl_open_regular(const char *path, size_t max, int *fd, size_t *size);

/* Reads a whole regular file of at most `max` bytes into memory (sl_open_regular's checks; the
 * copy is NUL-terminated for convenience). */
int sl_read_file_max(const char *path, size_t max, char **data, size_t *size);

/* sl_read_file_max with the limit SL_READ_FILE_MAX. */
#define SL_READ_FILE_MAX ((size_t)1 << 30)
int sl_read_file(const char *path, char **data, size_t *size);

/* Writes `len` bytes to `path` with permission bits `mode` (0644, or 0600 for secrets): to a
 * temporary name beside it first, renamed over `path` once whole, so a reader never sees half a
 * file and a failure leaves the old file as it was. */
int sl_write_file(const char *path, const void *data, size_t len, unsigned mode);

/* A file written in pieces the same way: sl_out_open creates `path`.tmp<pid> beside `path`,
 * sl_out_write appends, sl_out_commit flushes it to the disk and renames it over `path`, and
 * sl_out_abort (also after a failed write or commit; harmless after a commit) removes the
 * temporary. Every failure is SL_EIO naming `path` and the system's reason (errno). */
typedef struct sl_out_file {
    int fd;
    char path[4096], tmp[4160];
} sl_out_file;
int sl_out_open(sl_out_file *f, const char *path, unsigned mode);
int sl_out_write(sl_out_file *f, const void *data, size_t len);
int sl_out_commit(sl_out_file *f);
void sl_out_abort(sl_out_file *f);

/* write(2) of all `len` bytes to `fd` (retrying short writes and EINTR): 0, or the errno. With
 * SLUICE_ENOSPC=NAME:BYTES set (a test hook), a file whose name contains NAME takes at most BYTES
 * bytes before it fails with ENOSPC, as on a full disk. `name` is the file's path. */
int sl_write_all(int fd, const char *name, const void *data, size_t len);

/* Creates a directory and its missing parents (as `mkdir -p`); one that exists is fine. */
int sl_mkdir_p(const char *path);

/* Removes a directory and everything below it (symbolic links themselves, not what they point
 * to); a path that does not exist is fine. Entries that cannot be removed are logged. */
int sl_remove_tree(const char *dir);

#define SL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#define SL_MIN(a, b)    ((a) < (b) ? (a) : (b))
#define SL_MAX(a, b)    ((a) > (b) ? (a) : (b))

/* Propagates a failing status: `SL_TRY(sl_buffer_upload(...));` */
#define SL_TRY(expr)                                                                               \
    do {                                                                                           \
        int sl_try_status_ = (expr);                                                               \
        if (sl_try_status_ != SL_OK) return sl_try_status_;                                        \
    } while (0)

#ifdef __cplusplus
}
#endif
#endif
