/* libFuzzer target for the config reader: the input's leading lines that start with '-' are
 * --set overrides (without the dash, at most 8), the rest is the config's JSON text. Any input
 * must parse or be refused, never crash; an accepted config's effective JSON must parse back to
 * a config with the same hash. Paths in inputs are relative to the source tree (the tests'
 * working directory), so a seed can name samples/digits/digits.csv.gz. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *sets[8];
    int nsets = 0;
    char *json = text;
    while (nsets < 8 && json[0] == '-') {
        char *nl = strchr(json, '\n');
        if (!nl) break;
        *nl = '\0';
        sets[nsets++] = json + 1;
        json = nl + 1;
    }
    sl_config cfg;
    if (sl_config_parse(json, ".", sets, nsets, &cfg) == SL_OK) {
        char *again = sl_config_to_json(&cfg, false);
        if (!again) abort();
        sl_config back;
        if (sl_config_parse(again, ".", NULL, 0, &back) != SL_OK) abort();
        if (sl_config_hash(&back) != sl_config_hash(&cfg)) abort();
        sl_config_free(&back);
        free(again);
        sl_config_free(&cfg);
    }
    free(text);
    return 0;
}
