/* sl_tune_malloc: blocks of a message's size, freed, come back without faulting their pages in
 * again; with glibc's defaults (SLUICE_MALLOC=default) they are handed back to the kernel. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>

#include "core/core.h"

enum { BLOCK = 1 << 20, BLOCKS = 8 }; /* eight 1 MiB messages in flight */

static long minor_faults(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

/* Page faults taken by the third of three rounds that each allocate and fill BLOCKS blocks and then
 * free them all, as a receiver does with messages. (4 KiB pages: with transparent huge pages a
 * block faults in a few huge pages instead, which would hide the difference.) */
static long faults_in_third_round(void)
{
    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0);
    long before = 0;
    for (int round = 0; round < 3; round++) {
        if (round == 2) before = minor_faults();
        char *p[BLOCKS];
        for (int i = 0; i < BLOCKS; i++) {
            p[i] = malloc(BLOCK);
            cr_assert_not_null(p[i]);
            memset(p[i], round + i, BLOCK);
        }
        for (int i = 0; i < BLOCKS; i++) free(p[i]);
    }
    return minor_faults() - before;
}

Test(core_malloc, freed_blocks_are_reused_without_faults)
{
    cr_assert(sl_tune_malloc(), "mallopt refused the settings");
    long n = faults_in_third_round();
    cr_expect_lt(n, BLOCKS * BLOCK / 4096 / 8,
                 "%ld page faults for 8 MiB of reused blocks (2048 if every page came back)", n);
}

/* The reason for the settings, and the check that the test above can fail. */
Test(core_malloc, glibc_defaults_hand_freed_blocks_back)
{
    setenv("SLUICE_MALLOC", "default", 1);
    cr_assert_not(sl_tune_malloc(), "SLUICE_MALLOC=default still changed the settings");
    long n = faults_in_third_round();
    cr_expect_gt(n, BLOCKS * BLOCK / 4096 / 2,
                 "only %ld page faults for 8 MiB of blocks under glibc's defaults (expected about "
                 "2048): have glibc's thresholds changed?",
                 n);
}
