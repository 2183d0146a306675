/* The output directory of a run: its lock, the checkpoint a resumed run goes on from, and
 * metrics.jsonl written a whole line at a time (see train.h). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/exec/exec.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/train/train_impl.h"

/* One run at a time writes into a directory: an flock on output.dir/.lock, which the kernel
 * releases however the run ends (kill -9 included), holding the pid of the run that has it. The
 * file is removed at the end of the run, so a run that locked a file just removed tries again on
 * the new one (the usual lock-file dance: the lock counts only on the file the path names). */
static int lock_dir(sl__run *r)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/.lock", r->cfg->output.dir);
    for (;;) {
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return sl_fail(SL_EIO, "cannot open '%s': %s", path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            char holder[64] = "";
            ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
            holder[n > 0 ? n : 0] = '\0';
            holder[strcspn(holder, "\n")] = '\0';
            close(fd);
            if (e == EWOULDBLOCK)
                return sl_fail(SL_EIO,
                               "output.dir %s is in use by another run (pid %s): wait for it to "
                               "end, or give this run another output.dir",
                               r->cfg->output.dir, holder[0] ? holder : "unknown");
            return sl_fail(SL_EIO, "cannot lock '%s': %s", path, strerror(e));
        }
        struct stat held, named;
        if (fstat(fd, &held) == 0 && stat(path, &named) == 0 && held.st_ino == named.st_ino &&
            held.st_dev == named.st_dev) {
            r->lock_fd = fd;
            break;
        }
        close(fd); /* removed by the run that held it: lock the new one */
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(r->lock_fd, 0) != 0 || pwrite(r->lock_fd, pid, (size_t)len, 0) != len)
        return sl_fail(SL_EIO, "cannot write '%s': %s", path, strerror(errno));
    return SL_OK;
}

/* Whether a checkpoint's tensors load for this model: the manifest says the files are whole, this
 * says they are what they claim. */
static int verify(const sl__run *r, const sl_checkpoint *ck)
{
    char path[4200];
    sl_weights w;
    snprintf(path, sizeof path, "%s/model.safetensors", ck->dir);
    SL_TRY(sl_weights_load(&r->plan->model, path, &w));
    sl_weights_free(&w);
    sl_safetensors st;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", ck->dir);
    SL_TRY(sl_safetensors_load(path, &st));
    sl_safetensors_free(&st);
    return SL_OK;
}

/* The newest checkpoint that is complete and loads; the ones after it are skipped with a
 * warning that says why. */
static int find_resume(sl__run *r)
{
    const char *out = r->cfg->output.dir;
    int steps[4096], n;
    SL_TRY(sl_checkpoint_list(out, steps, (int)SL_ARRAY_LEN(steps), &n));
    for (int i = n - 1; i >= 0; i--) {
        char dir[4200];
        sl_run_path(dir, sizeof dir, out, SL_RUN_CHECKPOINT, 0, steps[i]);
        sl_checkpoint ck;
        int rc = sl_checkpoint_read(dir, &ck);
        if (rc == SL_OK) rc = verify(r, &ck);
        if (rc != SL_OK) {
            sl_log(SL_LOG_WARN, "%s; skipping it", sl_last_error());
            sl_clear_error();
            continue;
        }
        SL_TRY(sl_checkpoint_check(&ck, r->cfg));
        snprintf(r->resume, sizeof r->resume, "%s", ck.dir);
        r->start_step = ck.step;
        r->evals_seen = ck.evaluations;
        return SL_OK;
    }
    return sl_fail(SL_ECONFIG, "--resume: %s holds no complete checkpoint to go on from", out);
}

/* A fresh run must not mix its checkpoints with an earlier run's, nor take theirs for its own. */
static int check_fresh(const sl__run *r)
{
    int steps[4096], n;
    SL_TRY(sl_checkpoint_list(r->cfg->output.dir, steps, (int)SL_ARRAY_LEN(steps), &n));
    for (int i = n - 1; i >= 0 && r->cfg->output.checkpoint_interval > 0; i--) {
        char dir[4200];
        sl_run_path(dir, sizeof dir, r->cfg->output.dir, SL_RUN_CHECKPOINT, 0, steps[i]);
        sl_checkpoint ck;
        if (sl_checkpoint_read(dir, &ck) == SL_OK)
            return sl_fail(SL_ECONFIG,
                           "output.dir %s holds checkpoint-%d of an earlier run: go on from it "
                           "with --resume, or give this run another output.dir (or remove the "
                           "checkpoints)",
                           r->cfg->output.dir, steps[i]);
        sl_clear_error();
    }
    return SL_OK;
}

/* On resume, metrics.jsonl keeps the lines of the steps before the checkpoint (a killed run may
 * have gone further, and a line cut by the kill is dropped), rewritten as a whole. */
static int keep_metrics_before(const char *path, int step)
{
    char *text;
    size_t len;
    if (sl_read_file(path, &text, &len) != SL_OK) {
        sl_clear_error();
        return SL_OK;
    }
    size_t kept = 0;
    for (char *line = text; line < text + len;) {
        char *nl = memchr(line, '\n', (size_t)(text + len - line));
        if (!nl) break; /* cut by a kill: not a line */
        int s;
        size_t n = (size_t)(nl + 1 - line);
        if (sscanf(line, "{\"step\": %d", &s) == 1 && s < step) {
            memmove(text + kept, line, n);
            kept += n;
        }
        line = nl + 1;
    }
    int rc = sl_write_file(path, text, kept, 0644);
    free(text);
    return rc;
}

int sl__output_open(sl__run *r)
{
    r->lock_fd = r->metrics_fd = -1;
    SL_TRY(sl_mkdir_p(r->cfg->output.dir));
    SL_TRY(lock_dir(r));
    SL_TRY(sl__checkpoint_clean(r));
    SL_TRY(r->opt->resume ? find_resume(r) : check_fresh(r));
    char path[4096];
    sl_run_path(path, sizeof path, r->cfg->output.dir, SL_RUN_METRICS, 0, 0);
    if (r->opt->resume) SL_TRY(keep_metrics_before(path, r->start_step));
    int flags = O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (r->opt->resume ? 0 : O_TRUNC);
    if ((r->metrics_fd = open(path, flags, 0644)) < 0)
        return sl_fail(SL_EIO, "cannot write '%s': %s", path, strerror(errno));
    return SL_OK;
}

void sl__output_close(sl__run *r)
{
    if (r->metrics_fd >= 0) close(r->metrics_fd);
    if (r->lock_fd >= 0) {
        char path[4200];
        snprintf(path, sizeof path, "%s/.lock", r->cfg->output.dir);
        unlink(path); /* while still held: see lock_dir */
        close(r->lock_fd);
    }
    r->metrics_fd = r->lock_fd = -1;
}

int sl__metrics_line(sl__run *r, const char *fmt, ...)
{
    char line[1024], path[4096];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    n = SL_MIN(n, (int)sizeof line - 2);
    line[n++] = '\n';
    sl_run_path(path, sizeof path, r->cfg->output.dir, SL_RUN_METRICS, 0, 0);
    off_t before = lseek(r->metrics_fd, 0, SEEK_END);
    int err = sl_write_all(r->metrics_fd, path, line, (size_t)n);
    if (!err) return SL_OK;
    if (before >= 0 && ftruncate(r->metrics_fd, before) != 0)
        sl_log(SL_LOG_WARN, "cannot take back a cut line of %s: %s", path, strerror(errno));
    return sl_fail(SL_EIO, "cannot write '%s': %s", path, strerror(err));
}
