/* Runs a fuzz target (LLVMFuzzerTestOneInput) once on every file of the directories given, as
 * libFuzzer would, for builds without libFuzzer: the seeds and the crashers found are regression
 * inputs of every build. A target that finds a broken rule aborts; a memory error is ASan's (in
 * the asan build). Exits 1 when a directory cannot be read or holds no input. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/core.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int main(int argc, char **argv)
{
    int ran = 0;
    for (int a = 1; a < argc; a++) {
        DIR *d = opendir(argv[a]);
        if (!d) {
            fprintf(stderr, "replay: cannot open %s\n", argv[a]);
            return 1;
        }
        struct dirent *e;
        while ((e = readdir(d))) {
            if (e->d_name[0] == '.') continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[a], e->d_name);
            char *bytes;
            size_t n;
            if (sl_read_file(path, &bytes, &n) != SL_OK) {
                fprintf(stderr, "replay: %s\n", sl_last_error());
                closedir(d);
                return 1;
            }
            /* An exact copy, so ASan sees a read past the end of the input. */
            uint8_t *copy = malloc(n ? n : 1);
            memcpy(copy, bytes, n);
            free(bytes);
            LLVMFuzzerTestOneInput(copy, n);
            free(copy);
            ran++;
        }
        closedir(d);
    }
    printf("replay: %d inputs\n", ran);
    return ran > 0 ? 0 : 1;
}
