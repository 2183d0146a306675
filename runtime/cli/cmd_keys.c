/* `sluice keys`: generate CURVE key pairs for encrypted links between hosts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>

#include "runtime/cli/cli.h"
#include "core/core.h"
#include "runtime/plan/plan.h"
#include "transport/transport.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: sluice keys [-n COUNT] [--out DIR] [--json]\n\n"
            "Generates CURVE key pairs (Z85 text) for encrypted tcp links: one per rank.\n"
            "Each rank needs its own secret key, and every rank's public key goes in the run's\n"
            "config (launch.keys) so that only the run's processes are admitted.\n\n"
            "  -n COUNT    how many key pairs (default 1)\n"
            "  --out DIR   write DIR/rankI.key (secret, mode 0600) and DIR/rankI.pub for each\n"
            "  --json      print {\"keys\": [{\"public\": ..., \"secret\": ...}, ...]}\n");
}

int sl_cmd_keys(int argc, char **argv)
{
    if (sl_cli_wants_help(argc, argv)) {
        usage(stdout);
        return 0;
    }
    int count = 1, json = 0;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json")) {
            json = 1;
        } else if (!strcmp(argv[i], "-n") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 4096) {
                fprintf(stderr, "sluice keys: -n wants a count from 1 to 4096, not '%s'\n",
                        argv[i]);
                return 2;
            }
            count = (int)v;
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            dir = argv[++i];
        } else {
            fprintf(stderr, "sluice keys: unknown option '%s'\n\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (dir && mkdir(dir, 0700) < 0 && errno != EEXIST)
        return sl_cli_error("keys",
                            sl_fail(SL_EIO, "cannot create '%s': %s", dir, strerror(errno)));
    cJSON *root = json ? cJSON_CreateObject() : NULL;
    cJSON *arr = json ? cJSON_AddArrayToObject(root, "keys") : NULL;
    for (int i = 0; i < count; i++) {
        char pub[41], sec[41];
        char secret_path[4096], public_path[4096];
        sl_run_path(secret_path, sizeof secret_path, dir, SL_RUN_SECRET_KEY, i, 0);
        sl_run_path(public_path, sizeof public_path, dir, SL_RUN_PUBLIC_KEY, i, 0);
        int s = dir ? sl_transport_write_keypair(secret_path, public_path, pub)
                    : sl_transport_keypair(pub, sec);
        if (s) {
            cJSON_Delete(root);
            return sl_cli_error("keys", s);
        }
        if (json) {
            cJSON *k = cJSON_CreateObject();
            cJSON_AddStringToObject(k, "public", pub);
            if (!dir) cJSON_AddStringToObject(k, "secret", sec);
            cJSON_AddItemToArray(arr, k);
        } else if (dir) {
            printf("rank %d: public %s (secret in %s/rank%d.key)\n", i, pub, dir, i);
        } else {
            printf("public %s\nsecret %s\n", pub, sec);
        }
        memset(sec, 0, sizeof sec);
    }
    if (json) {
        char *text = cJSON_Print(root);
        printf("%s\n", text);
        free(text);
        cJSON_Delete(root);
    }
    return 0;
}
