/* Checkpoints on the coordinator's side: the ranks' parts merged into output.dir/checkpoint-<step>/
 * (exec.h describes what it holds), old ones pruned, and the newest complete one found for
 * --resume. A checkpoint is written into a temporary directory and renamed into place once its
 * manifest is there, so a crash or a full disk never leaves a half checkpoint under the name
 * and never touches a complete one. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runtime/exec/exec.h"
#include "runtime/safetensors/safetensors.h"
#include "runtime/train/train_impl.h"

/* The ranks' parts of a checkpoint, loaded. */
typedef struct parts {
    int n;
    sl_safetensors *st;
} parts;

static void parts_free(parts *p)
{
    for (int i = 0; i < p->n; i++) sl_safetensors_free(&p->st[i]);
    free(p->st);
}

static const sl_tensor *find_any(const parts *p, const char *name)
{
    for (int i = 0; i < p->n; i++) {
        const sl_tensor *t = sl_safetensors_find(&p->st[i], name);
        if (t) return t;
    }
    return NULL;
}

/* model.safetensors (every parameter by name, a tied pair once or twice as the ranks held it)
 * and optimizer.safetensors (everything else the ranks sent) into `dir`. */
static int write_tensors(const sl__run *r, const parts *p, const char *dir)
{
    const sl_model *m = &r->plan->model;
    size_t total = 0;
    for (int i = 0; i < p->n; i++) total += p->st[i].count;
    sl_tensor *model = sl_alloc(sizeof *model * (size_t)(m->ntensors + 1));
    sl_tensor *optim = sl_alloc(sizeof *optim * (total + 1));
    int rc = model && optim ? SL_OK : SL_ENOMEM;
    size_t nm = 0, no = 0;
    for (int q = 0; rc == SL_OK && q < m->ntensors; q++) {
        const sl_tensor *t = find_any(p, m->params[q].name);
        int twin = sl_model_twin(m, q);
        if (t)
            model[nm++] = *t;
        else if (twin < 0 || !find_any(p, m->params[twin].name))
            rc = sl_fail(SL_EINTERNAL, "no rank sent '%s' for the checkpoint", m->params[q].name);
    }
    for (int i = 0; rc == SL_OK && i < p->n; i++)
        for (size_t k = 0; k < p->st[i].count; k++) {
            const sl_tensor *t = &p->st[i].tensors[k];
            bool dup = false;
            for (size_t j = 0; j < no && !dup; j++) dup = !strcmp(optim[j].name, t->name);
            if (sl_model_find_param(m, t->name) < 0 && !dup) optim[no++] = *t;
        }
    char path[4400];
    const char *fk[] = {"format"}, *fv[] = {"pt"};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    if (rc == SL_OK) rc = sl_safetensors_save(path, model, nm, fk, fv, 1);
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (rc == SL_OK) rc = sl_safetensors_save(path, optim, no, NULL, NULL, 0);
    free(model);
    free(optim);
    return rc;
}

/* Puts the finished temporary directory `tmp` in place as `dir`: a complete checkpoint of the same
 * step already there (a run that went on from an earlier one) is swapped out atomically and then
 * removed, so one complete checkpoint of that step exists at every moment. */
static int put_in_place(const char *tmp, const char *dir)
{
    if (rename(tmp, dir) == 0) return SL_OK;
    if (errno != ENOTEMPTY && errno != EEXIST)
        return sl_fail(SL_EIO, "cannot rename '%s' to '%s': %s", tmp, dir, strerror(errno));
    if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0)
        return sl_fail(SL_EIO, "cannot replace '%s': %s", dir, strerror(errno));
    return sl_remove_tree(tmp);
}

/* Removes the checkpoints beyond the newest output.keep_checkpoints complete ones up to `step`,
 * and any incomplete one before `step` (a newer one belongs to nobody yet: it is left). */
static int prune(const sl__run *r, int step)
{
    int keep = r->cfg->output.keep_checkpoints, steps[4096], n, kept = 0;
    SL_TRY(sl_checkpoint_list(r->cfg->output.dir, steps, (int)SL_ARRAY_LEN(steps), &n));
    for (int i = n - 1; i >= 0; i--) {
        if (steps[i] > step) continue;
        char dir[4200];
        sl_run_path(dir, sizeof dir, r->cfg->output.dir, SL_RUN_CHECKPOINT, 0, steps[i]);
        sl_checkpoint ck;
        bool complete = sl_checkpoint_read(dir, &ck) == SL_OK;
        sl_clear_error();
        if (complete && (keep == 0 || ++kept <= keep)) continue;
        SL_TRY(sl_remove_tree(dir));
    }
    return SL_OK;
}

int sl__checkpoint_write(sl__run *r, int step)
{
    const sl_plan *p = r->plan;
    char dir[4200], tmp[4300];
    sl_run_path(dir, sizeof dir, r->cfg->output.dir, SL_RUN_CHECKPOINT, 0, step);
    snprintf(tmp, sizeof tmp, "%s.tmp%ld", dir, (long)getpid());
    parts ps = {.st = sl_alloc(sizeof(sl_safetensors) * (size_t)p->ranks)};
    int rc = ps.st ? SL_OK : SL_ENOMEM;
    for (int rank = 0; rc == SL_OK && rank < p->ranks; rank++) {
        char path[4096];
        sl_run_path(path, sizeof path, r->weights_dir, SL_RUN_RANK_CHECKPOINT, rank, step);
        rc = sl_safetensors_load(path, &ps.st[rank]);
        if (rc == SL_OK) ps.n++;
    }
    /* The ranks' parts are gone once read, whatever happens next. */
    for (int rank = 0; rank < p->ranks; rank++) {
        char path[4096];
        unlink(sl_run_path(path, sizeof path, r->weights_dir, SL_RUN_RANK_CHECKPOINT, rank, step));
    }
    if (rc == SL_OK) rc = sl_remove_tree(tmp);
    if (rc == SL_OK) rc = sl_mkdir_p(tmp);
    if (rc == SL_OK) rc = write_tensors(r, &ps, tmp);
    if (rc == SL_OK) rc = sl_checkpoint_write_manifest(tmp, r->cfg, step, r->evals_seen);
    if (rc == SL_OK) rc = put_in_place(tmp, dir);
    parts_free(&ps);
    if (rc != SL_OK) {
        int keep = rc;
        char message[2048];
        snprintf(message, sizeof message, "%s", sl_last_error());
        sl_remove_tree(tmp);
        return sl_fail(keep, "writing checkpoint %s: %s (the checkpoints before it are intact)",
                       dir, message);
    }
    r->last_checkpoint = step;
    return prune(r, step);
}

/* Leftovers of a run that was killed while it wrote a checkpoint (checkpoint-<step>.tmp<pid>):
 * removed by the next run that holds the output directory's lock. */
int sl__checkpoint_clean(const sl__run *r)
{
    DIR *d = opendir(r->cfg->output.dir);
    if (!d) return SL_OK;
    struct dirent *e;
    int rc = SL_OK;
    while (rc == SL_OK && (e = readdir(d))) {
        if (strncmp(e->d_name, "checkpoint-", 11) != 0 || !strstr(e->d_name, ".tmp")) continue;
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", r->cfg->output.dir, e->d_name);
        rc = sl_remove_tree(path);
    }
    closedir(d);
    return rc;
}
