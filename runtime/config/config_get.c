/* The config loader's JSON helpers: --set overrides, typed getters with their messages, key checks
 * and path resolution. What the sections mean is in config.c. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/config/config_impl.h"

char *sl__config_dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = sl_alloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------------------------------------
 * --set overrides */

int sl__config_apply_set(cJSON *root, const char *set)
{
    const char *eq = strchr(set, '=');
    if (!eq || eq == set)
        return sl_fail(SL_ECONFIG, "config: --set '%s' must have the form key.path=value", set);
    size_t klen = (size_t)(eq - set);
    for (size_t i = 0; i < klen; i++)
        if (set[i] == '.' && (i == 0 || i + 1 == klen || set[i + 1] == '.'))
            return sl_fail(SL_ECONFIG, "config: --set '%s': the key %.*s has an empty part", set,
                           (int)klen, set);
    char *key = sl_alloc(klen + 1);
    if (!key) return SL_ENOMEM;
    memcpy(key, set, klen);
    const char *text = eq + 1;
    /* JSON only when all of it is ("10abc" is the string, not 10). */
    cJSON *value = cJSON_ParseWithOpts(text, NULL, 1);
    if (!value) value = cJSON_CreateString(text);
    if (!value) {
        free(key);
        return sl_fail(SL_ENOMEM, "config: out of memory applying --set");
    }
    cJSON *obj = root;
    int st = SL_OK;
    char *save = NULL;
    char *part = strtok_r(key, ".", &save);
    while (part) {
        char *next = strtok_r(NULL, ".", &save);
        if (!next) {
            if (cJSON_GetObjectItemCaseSensitive(obj, part))
                cJSON_ReplaceItemInObjectCaseSensitive(obj, part, value);
            else
                cJSON_AddItemToObject(obj, part, value);
            value = NULL;
            break;
        }
        cJSON *child = cJSON_GetObjectItemCaseSensitive(obj, part);
        if (!child) {
            child = cJSON_AddObjectToObject(obj, part);
        } else if (!cJSON_IsObject(child)) {
            st = sl_fail(SL_ECONFIG, "config: --set %.*s: '%s' is not an object", (int)klen, set,
                         part);
            break;
        }
        obj = child;
        part = next;
    }
    if (value && st == SL_OK) st = sl_fail(SL_ECONFIG, "config: --set '%s' names no key", set);
    cJSON_Delete(value);
    free(key);
    return st;
}

/* ------------------------------------------------------------------------------------------------
 * Typed getters. Each names the full key path in its message. */

cJSON *sl__config_get(sl__config_ctx c, const char *key)
{
    return c.obj ? cJSON_GetObjectItemCaseSensitive(c.obj, key) : NULL;
}

int sl__config_missing(sl__config_ctx c, const char *key)
{
    return sl_fail(SL_ECONFIG, "config: %s.%s is required", c.section, key);
}

const char *sl__config_type_name(const cJSON *v)
{
    if (cJSON_IsString(v)) return "a string";
    if (cJSON_IsNumber(v)) return "a number";
    if (cJSON_IsBool(v)) return "a boolean";
    if (cJSON_IsArray(v)) return "an array";
    if (cJSON_IsObject(v)) return "an object";
    return "null";
}

int sl__config_get_int(sl__config_ctx c, const char *key, bool required, int def, int lo, int hi,
                       int *out)
{
    cJSON *v = sl__config_get(c, key);
    if (!v) {
        if (required) return sl__config_missing(c, key);
        *out = def;
        return SL_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || !isfinite(v->valuedouble))
        return sl_fail(SL_ECONFIG, "config: %s.%s must be an integer (got %s)", c.section, key,
                       cJSON_IsNumber(v) ? "a fraction" : sl__config_type_name(v));
    if (v->valuedouble < lo || v->valuedouble > hi)
        return sl_fail(SL_ECONFIG, "config: %s.%s (%.0f) must be in [%d, %d]", c.section, key,
                       v->valuedouble, lo, hi);
    *out = (int)v->valuedouble;
    return SL_OK;
}

int sl__config_get_u64(sl__config_ctx c, const char *key, uint64_t *out)
{
    cJSON *v = sl__config_get(c, key);
    if (!v) {
        *out = 0;
        return SL_OK;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0 ||
        v->valuedouble > 9007199254740992.0)
        return sl_fail(SL_ECONFIG, "config: %s.%s must be a non-negative integer (got %s)",
                       c.section, key, sl__config_type_name(v));
    *out = (uint64_t)v->valuedouble;
    return SL_OK;
}

/* A number in [lo, hi] (hi_open: [lo, hi)). */
int sl__config_get_num(sl__config_ctx c, const char *key, bool required, double def, double lo,
                       double hi, bool hi_open, double *out)
{
    cJSON *v = sl__config_get(c, key);
    if (!v) {
        if (required) return sl__config_missing(c, key);
        *out = def;
        return SL_OK;
    }
    if (!cJSON_IsNumber(v))
        return sl_fail(SL_ECONFIG, "config: %s.%s must be a number (got %s)", c.section, key,
                       sl__config_type_name(v));
    double d = v->valuedouble;
    if (!(d >= lo) || (hi_open ? !(d < hi) : !(d <= hi)))
        return sl_fail(SL_ECONFIG, "config: %s.%s (%g) must be in [%g, %g%c", c.section, key, d, lo,
                       hi, hi_open ? ')' : ']');
    *out = d;
    return SL_OK;
}

int sl__config_get_bool(sl__config_ctx c, const char *key, bool def, bool *out)
{
    cJSON *v = sl__config_get(c, key);
    if (!v) {
        *out = def;
        return SL_OK;
    }
    if (!cJSON_IsBool(v))
        return sl_fail(SL_ECONFIG, "config: %s.%s must be true or false (got %s)", c.section, key,
                       sl__config_type_name(v));
    *out = cJSON_IsTrue(v);
    return SL_OK;
}

/* A string copy into *out (NULL when absent and def is NULL). */
int sl__config_get_str(sl__config_ctx c, const char *key, bool required, const char *def,
                       char **out)
{
    cJSON *v = sl__config_get(c, key);
    *out = NULL;
    if (!v) {
        if (required) return sl__config_missing(c, key);
        if (!def) return SL_OK;
        return (*out = sl__config_dup_str(def)) ? SL_OK : SL_ENOMEM;
    }
    if (!cJSON_IsString(v))
        return sl_fail(SL_ECONFIG, "config: %s.%s must be a string (got %s)", c.section, key,
                       sl__config_type_name(v));
    if (!v->valuestring[0])
        return sl_fail(SL_ECONFIG, "config: %s.%s must not be empty", c.section, key);
    return (*out = sl__config_dup_str(v->valuestring)) ? SL_OK : SL_ENOMEM;
}

/* One of `names`; *out is its index. */
int sl__config_get_enum(sl__config_ctx c, const char *key, const char *def,
                        const char *const *names, int n, int *out)
{
    char *s = NULL;
    SL_TRY(sl__config_get_str(c, key, def == NULL, def, &s));
    for (int i = 0; i < n; i++) {
        if (!strcmp(s, names[i])) {
            *out = i;
            free(s);
            return SL_OK;
        }
    }
    char list[256] = "";
    for (int i = 0; i < n; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", names[i]);
    int st = sl_fail(SL_ECONFIG, "config: %s.%s '%s' is not one of: %s", c.section, key, s, list);
    free(s);
    return st;
}

/* Rejects keys outside `allowed` (a NULL-terminated list). */
int sl__config_check_keys(const char *section, cJSON *obj, const char *const *allowed)
{
    if (!obj) return SL_OK;
    for (cJSON *it = obj->child; it; it = it->next) {
        bool ok = false;
        for (const char *const *a = allowed; *a; a++) ok = ok || !strcmp(it->string, *a);
        if (!ok) {
            if (section[0])
                return sl_fail(SL_ECONFIG, "config: unknown key '%s.%s'", section, it->string);
            return sl_fail(SL_ECONFIG, "config: unknown key '%s'", it->string);
        }
        for (cJSON *d = it->next; d; d = d->next)
            if (!strcmp(d->string, it->string))
                return sl_fail(SL_ECONFIG, "config: key '%s%s%s' appears twice", section,
                               section[0] ? "." : "", it->string);
    }
    return SL_OK;
}

/* A section that must be an object when present. */
int sl__config_section(cJSON *parent, const char *name, const char *path, bool required,
                       sl__config_ctx *out)
{
    out->section = path;
    out->obj = cJSON_GetObjectItemCaseSensitive(parent, name);
    if (!out->obj) {
        if (required) return sl_fail(SL_ECONFIG, "config: section '%s' is required", path);
        return SL_OK;
    }
    if (!cJSON_IsObject(out->obj))
        return sl_fail(SL_ECONFIG, "config: %s must be an object (got %s)", path,
                       sl__config_type_name(out->obj));
    return SL_OK;
}

/* An array of non-empty strings into a fresh char*[]; a single string gives one element when
 * `allow_one` is set. */
int sl__config_get_str_list(sl__config_ctx c, const char *key, bool allow_one, char ***out, int *n)
{
    cJSON *v = sl__config_get(c, key);
    *out = NULL;
    *n = 0;
    if (!v) return SL_OK;
    if (allow_one && cJSON_IsString(v)) {
        if (!v->valuestring[0])
            return sl_fail(SL_ECONFIG, "config: %s%s%s must not be empty", c.section,
                           c.section[0] ? "." : "", key);
        if (!(*out = sl_alloc(sizeof(char *))) || !((*out)[0] = sl__config_dup_str(v->valuestring)))
            return SL_ENOMEM;
        *n = 1;
        return SL_OK;
    }
    if (!cJSON_IsArray(v))
        return sl_fail(SL_ECONFIG, "config: %s%s%s must be %san array of strings (got %s)",
                       c.section, c.section[0] ? "." : "", key, allow_one ? "a string or " : "",
                       sl__config_type_name(v));
    int count = cJSON_GetArraySize(v);
    if (!(*out = sl_alloc(sizeof(char *) * (size_t)(count + 1)))) return SL_ENOMEM;
    int i = 0;
    for (cJSON *it = v->child; it; it = it->next, i++) {
        if (!cJSON_IsString(it) || !it->valuestring[0])
            return sl_fail(SL_ECONFIG, "config: %s%s%s[%d] must be a non-empty string (got %s)",
                           c.section, c.section[0] ? "." : "", key, i, sl__config_type_name(it));
        if (!((*out)[i] = sl__config_dup_str(it->valuestring))) return SL_ENOMEM;
        *n = i + 1;
    }
    return SL_OK;
}

static bool file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* The path rule in config.h: as given if it exists from the working directory (or is absolute),
 * else relative to the config's directory, else relative to each of that directory's ancestors in
 * turn (so a sample's repository-relative path works from a build directory); the file must exist.
 */
/* A file the config names must be a regular file: a FIFO or a device would block or never end
 * when read. */
static int check_kind(const char *key, const char *path, bool want_dir)
{
    struct stat sb;
    if (stat(path, &sb) != 0) return SL_OK; /* reported by the caller */
    if (want_dir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode)) return SL_OK;
    return sl_fail(SL_ECONFIG, "config: %s: '%s' is not a %s", key, path,
                   want_dir ? "directory" : "regular file (a FIFO, a device or a directory?)");
}

int sl__config_resolve_path(const char *key, const char *dir, bool want_dir, char **path)
{
    if ((*path)[0] == '/' || file_exists(*path) || !dir || !strcmp(dir, ".")) {
        if (!file_exists(*path))
            return sl_fail(SL_ECONFIG, "config: %s: file '%s' does not exist", key, *path);
        return check_kind(key, *path, want_dir);
    }
    size_t n = strlen(dir) + strlen(*path) + 2;
    char *base = sl__config_dup_str(dir), *joined = sl_alloc(n);
    if (!base || !joined) {
        free(base);
        free(joined);
        return SL_ENOMEM;
    }
    for (;;) {
        snprintf(joined, n, "%s/%s", base, *path);
        if (file_exists(joined)) {
            free(base);
            free(*path);
            *path = joined;
            return check_kind(key, *path, want_dir);
        }
        char *slash = strrchr(base, '/');
        if (!slash || slash == base) break;
        *slash = '\0';
    }
    int st = sl_fail(SL_ECONFIG,
                     "config: %s: file '%s' does not exist (looked in the working directory, in "
                     "'%s' and its parents)",
                     key, *path, dir);
    free(base);
    free(joined);
    return st;
}
