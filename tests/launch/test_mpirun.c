/* Open MPI's mpirun (Debian's openmpi-bin) on 4 ranks of this host: the run's losses and final
 * weights equal the local run's, and output.dir holds only the outputs. Skipped, saying so, when
 * mpirun is not installed. */
#include "tests/launch/run.h"

TestSuite(mpirun, .init = launchers_setup, .fini = launchers_teardown, .timeout = 0);

/* Open MPI's mpirun on 4 ranks of this host. */
Test(mpirun, four_ranks_equal_local)
{
    if (!have("mpirun")) launchers_skip("mpirun is not installed (Debian: openmpi-bin)");
    local_run();
    char *argv[48], set[512], port[64], log[600];
    snprintf(port, sizeof port, "MASTER_PORT=%d", free_port());
    char *head[] = {"mpirun",
                    "--allow-run-as-root",
                    "--oversubscribe",
                    "-np",
                    "4",
                    "-x",
                    "MASTER_ADDR=127.0.0.1",
                    "-x",
                    port,
                    "-x",
                    "SLUICE_HOST=127.0.0.1",
                    "sluice"};
    int n = (int)(sizeof head / sizeof *head);
    for (int i = 0; i < n; i++) argv[i] = head[i];
    argv[n - 1] = getenv("SLUICE_EXE");
    train_args(argv, n, "mpirun", set, sizeof set);
    snprintf(log, sizeof log, "%s/mpirun.log", outdir);
    cr_assert_eq(wait_for(spawn(argv, NULL, log)), 0, "mpirun failed:\n%s", read_text(log));
    assert_equals_local("mpirun", log);
}
