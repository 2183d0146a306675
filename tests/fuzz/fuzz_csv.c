/* libFuzzer target for the CSV reader (data.path .csv, after decompression): any bytes must give
 * a dataset or be refused, never crash; an accepted dataset holds finite features and class ids
 * in range (or finite targets). The first byte picks the model: cross_entropy over 3 classes or
 * mse with 2 targets, 2 inputs either way. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"
#include "runtime/config/config.h"
#include "runtime/data/data_impl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    bool classes = data[0] & 1;
    int outputs = classes ? 3 : 2;
    char *text = malloc(size); /* the rest, NUL-terminated as the reader leaves it */
    if (!text) return 0;
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    sl_config c;
    memset(&c, 0, sizeof c);
    c.model.inputs = 2;
    c.model.loss = classes ? SL_LOSS_CROSS_ENTROPY : SL_LOSS_MSE;
    sl_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (sl__data_csv_dataset(&c, outputs, "fuzz.csv", text, size - 1, &ds) == SL_OK) {
        if (ds.rows < 1) abort();
        for (size_t i = 0; i < ds.rows * 2; i++)
            if (!isfinite(ds.x[i])) abort();
        for (size_t i = 0; classes && i < ds.rows; i++)
            if (ds.labels[i] < 0 || ds.labels[i] >= outputs) abort();
        for (size_t i = 0; !classes && i < ds.rows * (size_t)outputs; i++)
            if (!isfinite(ds.targets[i])) abort();
    }
    sl_dataset_free(&ds);
    free(text);
    return 0;
}
