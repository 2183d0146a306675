/* The layer table and the loss table, and the lookups every other part of the runtime goes
 * through: parsing a layer's config text, listing the kinds for messages, the stash a layer
 * needs, and the losses by kind and by name. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "core/core.h"
#include "runtime/model/layers/layers_impl.h"

/* Every layer kind, in the order messages list them. */
static const sl_layer_kind *const layer_kinds[] = {
    &sl__layer_linear, &sl__layer_relu,      &sl__layer_tanh,      &sl__layer_sigmoid,
    &sl__layer_gelu,   &sl__layer_gelu_tanh, &sl__layer_embedding, &sl__layer_block,
    &sl__layer_head,   &sl__layer_delay,
};

/* Every loss, indexed by its kind. */
static const sl_loss *const losses[SL_LOSS_COUNT] = {
    [SL_LOSS_CROSS_ENTROPY] = &sl__loss_cross_entropy,
    [SL_LOSS_MSE] = &sl__loss_mse,
};

/* ------------------------------------------------------------------------------------------------
 * Layers */

/* Built once from the table, so that a new row shows up in every message without editing them. */
static char kinds_text[256];
static pthread_once_t kinds_once = PTHREAD_ONCE_INIT;

static void build_kinds_text(void)
{
    size_t len = 0;
    for (size_t k = 0; k < SL_ARRAY_LEN(layer_kinds); k++) {
        int n = snprintf(kinds_text + len, sizeof kinds_text - len, "%s%s", k ? ", " : "",
                         layer_kinds[k]->syntax);
        /* A table too long for the buffer is cut short: the message still reads, only shorter. */
        if (n < 0 || (size_t)n >= sizeof kinds_text - len) break;
        len += (size_t)n;
    }
}

const char *sl_layer_kinds_text(void)
{
    pthread_once(&kinds_once, build_kinds_text);
    return kinds_text;
}

int sl_layer_parse(const char *text, sl_layer *out)
{
    memset(out, 0, sizeof *out);
    if (!text) return sl_fail(SL_EINVAL, "layer: no text (%s)", sl_layer_kinds_text());
    const char *colon = strchr(text, ':');
    size_t name_len = colon ? (size_t)(colon - text) : strlen(text);
    for (size_t k = 0; k < SL_ARRAY_LEN(layer_kinds); k++) {
        const sl_layer_kind *kind = layer_kinds[k];
        if (strlen(kind->name) != name_len || strncmp(text, kind->name, name_len) != 0) continue;
        out->kind = kind;
        int st = kind->parse(kind, colon ? colon + 1 : NULL, out);
        if (st != SL_OK) {
            memset(out, 0, sizeof *out);
            return sl_fail_context(st, "layer '%s'", text);
        }
        return SL_OK;
    }
    return sl_fail(SL_EINVAL, "unknown layer '%s' (%s)", text, sl_layer_kinds_text());
}

size_t sl_layer_stash_bytes(const sl_layer *l)
{
    size_t widths[SL_LAYER_MAX_KEEP], keep = 0;
    int n = l->kind->keep ? l->kind->keep(l, widths) : 0;
    for (int j = 0; j < n; j++) keep += widths[j];
    return ((size_t)l->out + keep) * sizeof(float);
}

/* ------------------------------------------------------------------------------------------------
 * Losses */

const sl_loss *sl_loss_get(enum sl_loss_kind kind)
{
    if ((int)kind < 0 || kind >= SL_LOSS_COUNT) return NULL;
    return losses[kind];
}

int sl_loss_parse(const char *name, enum sl_loss_kind *out)
{
    for (int k = 0; k < SL_LOSS_COUNT; k++) {
        if (name && !strcmp(name, losses[k]->name)) {
            *out = (enum sl_loss_kind)k;
            return SL_OK;
        }
    }
    char names[128] = "";
    for (int k = 0; k < SL_LOSS_COUNT; k++)
        snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", k ? ", " : "",
                 losses[k]->name);
    return sl_fail(SL_EINVAL, "unknown loss '%s' (%s)", name ? name : "(null)", names);
}
