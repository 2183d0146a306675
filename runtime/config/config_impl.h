/* Internals of the config module shared by its files: config.c (what the sections mean),
 * config_get.c (the JSON helpers it reads them with) and config_json.c (the effective config). */
#ifndef SL_CONFIG_IMPL_H
#define SL_CONFIG_IMPL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* train.optimizer.name's values, indexed by enum sl_optimizer_kind. */
extern const char *const sl__config_opt_names[3];

/* config_get.c: a fresh copy of s (NULL when out of memory). */
char *sl__config_dup_str(const char *s);

/* config_get.c: one --set key.path=value applied to the tree, before validation. */
int sl__config_apply_set(cJSON *root, const char *set);

/* A section being read: its full key path, so that every message names the key in full. */
typedef struct sl__config_ctx {
    const char *section; /* "model", "train.optimizer", ... */
    cJSON *obj;
} sl__config_ctx;

/* config_get.c: the typed getters. Each names the full key path in its message; an absent
 * optional key gives the default. */
cJSON *sl__config_get(sl__config_ctx c, const char *key);
int sl__config_missing(sl__config_ctx c, const char *key);
const char *sl__config_type_name(const cJSON *v);
int sl__config_get_int(sl__config_ctx c, const char *key, bool required, int def, int lo, int hi,
                       int *out);
int sl__config_get_u64(sl__config_ctx c, const char *key, uint64_t *out);
int sl__config_get_num(sl__config_ctx c, const char *key, bool required, double def, double lo,
                       double hi, bool hi_open, double *out);
int sl__config_get_bool(sl__config_ctx c, const char *key, bool def, bool *out);
int sl__config_get_str(sl__config_ctx c, const char *key, bool required, const char *def,
                       char **out);
int sl__config_get_enum(sl__config_ctx c, const char *key, const char *def,
                        const char *const *names, int n, int *out);
int sl__config_get_str_list(sl__config_ctx c, const char *key, bool allow_one, char ***out, int *n);

/* config_get.c: the shape of the tree: unknown or repeated keys, and sections that must be
 * objects. */
int sl__config_check_keys(const char *section, cJSON *obj, const char *const *allowed);
int sl__config_section(cJSON *parent, const char *name, const char *path, bool required,
                       sl__config_ctx *out);

/* config_get.c: the path rule in config.h, applied to *path in place; what it names must be a
 * regular file (or a directory when want_dir). */
int sl__config_resolve_path(const char *key, const char *dir, bool want_dir, char **path);

#endif
