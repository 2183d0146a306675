/* A PyTorch fixture (tests/fixtures/make_torch_*.py): its config (from the file's metadata), the
 * model, the initial and final weights and the data, loaded the same way by every suite that
 * checks sluice against PyTorch. */
#ifndef SL_TEST_TRAIN_FIXTURE_H
#define SL_TEST_TRAIN_FIXTURE_H

#include <criterion/criterion.h>
#include <string.h>

#include "helpers.h"
#include "runtime/data/data.h"
#include "runtime/model/model.h"
#include "runtime/safetensors/safetensors.h"

typedef struct torch_fixture {
    char path[640];
    sl_safetensors st;
    sl_config cfg;
    sl_model m;
    sl_weights init, final; /* "init." and "final." tensors */
    sl_data data;
    const sl_tensor *losses; /* F64 [steps] */
} torch_fixture;

static inline void fixture_load(const char *name, torch_fixture *f)
{
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tests/fixtures", source_dir());
    snprintf(f->path, sizeof f->path, "%s/%s.safetensors", dir, name);
    cr_assert_eq(sl_safetensors_load(f->path, &f->st), SL_OK, "%s", sl_last_error());
    const char *json = sl_safetensors_meta(&f->st, "config");
    cr_assert_not_null(json, "%s has no config metadata", name);
    cr_assert_eq(sl_config_parse(json, dir, NULL, 0, &f->cfg), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_model_init(&f->cfg, &f->m), SL_OK, "%s", sl_last_error());
    cr_assert_eq(sl_weights_from_safetensors(&f->m, &f->st, "init.", f->path, &f->init), SL_OK,
                 "%s", sl_last_error());
    cr_assert_eq(sl_weights_from_safetensors(&f->m, &f->st, "final.", f->path, &f->final), SL_OK,
                 "%s", sl_last_error());
    cr_assert_eq(sl_data_load(&f->cfg, f->m.outputs, &f->data), SL_OK, "%s", sl_last_error());
    f->losses = sl_safetensors_find(&f->st, "losses");
    cr_assert(f->losses && f->losses->dtype == SL_DTYPE_F64, "%s has no F64 losses", name);
}

/* PyTorch's loss of step s. */
static inline double fixture_loss(const torch_fixture *f, int s)
{
    double want;
    memcpy(&want, (const char *)f->losses->data + 8 * (size_t)s, 8);
    return want;
}

static inline void fixture_free(torch_fixture *f)
{
    sl_data_free(&f->data);
    sl_weights_free(&f->init);
    sl_weights_free(&f->final);
    sl_model_free(&f->m);
    sl_config_free(&f->cfg);
    sl_safetensors_free(&f->st);
}

#endif
