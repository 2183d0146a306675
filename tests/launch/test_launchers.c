/* `sluice train` under torchrun's variables (Debian 12's torchrun itself fails before starting a
 * worker, see the README) and static endpoints with --rank, each on 4 ranks over tcp on this host,
 * each run's losses and final weights equal to the local run's and nothing but the outputs in
 * output.dir (rank 0 gathers the other ranks' weights over the network); PMI's variables too.
 * mpirun, srun and network namespaces have suites of their own (test_mpirun.c, test_slurm.c,
 * test_netns.c), which skip when what they need is missing. Bad launcher input is refused with a
 * message naming it. */
#include "tests/launch/run.h"

TestSuite(launchers, .init = launchers_setup, .fini = launchers_teardown, .timeout = 0);

/* Runs RANKS processes of `argv` with each one's environment from env_of(rank) and checks that
 * all succeed; their output goes to `log`. */
static void run_ranks(const char *name, char **argv,
                      void (*env_of)(int rank, int port, char env[][128]), char *log, size_t cap)
{
    snprintf(log, cap, "%s/%s.log", outdir, name);
    int port = free_port();
    pid_t pids[RANKS];
    for (int r = 0; r < RANKS; r++) {
        char env[10][128] = {{0}};
        const char *list[11] = {0};
        env_of(r, port, env);
        for (int i = 0; i < 10 && env[i][0]; i++) list[i] = env[i];
        pids[r] = spawn(argv, list, log);
    }
    for (int r = 0; r < RANKS; r++)
        cr_assert_eq(wait_for(pids[r]), 0, "%s: rank %d failed:\n%s", name, r, read_text(log));
}

/* The same, and the run equals the local one. */
static void ranks_equal_local(const char *name, char **argv,
                              void (*env_of)(int rank, int port, char env[][128]))
{
    local_run();
    char log[600];
    run_ranks(name, argv, env_of, log, sizeof log);
    assert_equals_local(name, log);
}

static void torchrun_env(int rank, int port, char env[][128])
{
    snprintf(env[0], 128, "RANK=%d", rank);
    snprintf(env[1], 128, "LOCAL_RANK=%d", rank);
    snprintf(env[2], 128, "WORLD_SIZE=%d", RANKS);
    snprintf(env[3], 128, "LOCAL_WORLD_SIZE=%d", RANKS);
    snprintf(env[4], 128, "MASTER_ADDR=127.0.0.1");
    snprintf(env[5], 128, "MASTER_PORT=%d", port);
    snprintf(env[6], 128, "TORCHELASTIC_RUN_ID=sluice-test");
    snprintf(env[7], 128, "SLUICE_HOST=127.0.0.1");
}

/* Exactly the variables torchrun sets for its workers. */
Test(launchers, torchrun_variables)
{
    char *argv[32], set[512];
    argv[0] = "sluice";
    train_args(argv, 1, "torchrun", set, sizeof set);
    ranks_equal_local("torchrun", argv, torchrun_env);
}

static void pmi_env(int rank, int port, char env[][128])
{
    snprintf(env[0], 128, "PMI_RANK=%d", rank);
    snprintf(env[1], 128, "PMI_SIZE=%d", RANKS);
    snprintf(env[2], 128, "PMIX_NAMESPACE=pmi-test");
    snprintf(env[3], 128, "MASTER_ADDR=127.0.0.1");
    snprintf(env[4], 128, "MASTER_PORT=%d", port);
    snprintf(env[5], 128, "SLUICE_HOST=127.0.0.1");
}

/* PMI's variables, as MPICH's and Intel MPI's launchers set them. */
Test(launchers, pmi_variables)
{
    char *argv[32], set[512];
    argv[0] = "sluice";
    train_args(argv, 1, "pmi", set, sizeof set);
    ranks_equal_local("pmi", argv, pmi_env);
}

/* output.every_rank: every rank leaves its weight files in the shared output.dir instead of
 * sending them; rank 0 merges and removes them, so the outputs are the same. */
Test(launchers, every_rank_on_a_shared_dir)
{
    char *argv[40], set[512];
    argv[0] = "sluice";
    int n = 1 + train_args(argv, 1, "every_rank", set, sizeof set);
    argv[n++] = "--set";
    argv[n++] = "output.every_rank=true";
    argv[n] = NULL;
    ranks_equal_local("every_rank", argv, torchrun_env);
}

/* Checkpoints too reach rank 0 over the network: each is in output.dir, and no rank's own file
 * is left anywhere in it. */
Test(launchers, checkpoints_gathered)
{
    char *argv[40], set[512], log[600];
    argv[0] = "sluice";
    int n = 1 + train_args(argv, 1, "checkpoints", set, sizeof set);
    argv[n++] = "--set";
    argv[n++] = "output.checkpoint_interval=2";
    argv[n] = NULL;
    run_ranks("checkpoints", argv, torchrun_env, log, sizeof log);
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/checkpoints", outdir);
    for (int step = 2; step < 6; step += 2) {
        snprintf(path, sizeof path, "%s/checkpoint-%d/manifest.json", dir, step);
        cr_assert_eq(access(path, F_OK), 0, "%s is missing:\n%s", path, read_text(log));
    }
    DIR *d = opendir(dir);
    cr_assert_not_null(d);
    for (struct dirent *e; (e = readdir(d));)
        cr_assert_neq(strncmp(e->d_name, ".weights", 8), 0, "%s left in output.dir", e->d_name);
    closedir(d);
}

/* Static endpoints: launch.endpoints lists one tcp endpoint per rank and each process is started
 * by hand with --rank R; rank 0 hosts the rendezvous one port above its endpoint. */
static char endpoints_set[512];
static void no_env(int rank, int port, char env[][128])
{
    (void)rank, (void)port, (void)env;
}

Test(launchers, static_endpoints)
{
    local_run();
    int p[RANKS];
    for (int r = 0; r < RANKS; r++) p[r] = free_port();
    snprintf(endpoints_set, sizeof endpoints_set,
             "launch.endpoints=[\"tcp://127.0.0.1:%d\",\"tcp://127.0.0.1:%d\",\"tcp://"
             "127.0.0.1:%d\",\"tcp://127.0.0.1:%d\"]",
             p[0], p[1], p[2], p[3]);
    char log[600], set[512], rank[RANKS][8];
    snprintf(log, sizeof log, "%s/static.log", outdir);
    pid_t pids[RANKS];
    for (int r = 0; r < RANKS; r++) {
        char *argv[40];
        argv[0] = "sluice";
        int n = 1 + train_args(argv, 1, "static", set, sizeof set);
        snprintf(rank[r], sizeof rank[r], "%d", r);
        argv[n++] = "--set";
        argv[n++] = endpoints_set;
        argv[n++] = "--rank";
        argv[n++] = rank[r];
        argv[n] = NULL;
        pids[r] = spawn(argv, NULL, log);
    }
    (void)no_env;
    for (int r = 0; r < RANKS; r++)
        cr_assert_eq(wait_for(pids[r]), 0, "static: rank %d failed:\n%s", r, read_text(log));
    assert_equals_local("static", log);
}

/* ------------------------------------------------------------------------------------------------
 * Bad launcher input: one rank, refused at once with a message naming what was wrong */

static void refused(const char *const env[], const char *extra_set, const char *needle)
{
    char *argv[40], set[512], log[600];
    argv[0] = "sluice";
    int n = 1 + train_args(argv, 1, "refused", set, sizeof set);
    if (extra_set) argv[n++] = "--set", argv[n++] = (char *)extra_set;
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/refused.log", outdir);
    unlink(log);
    cr_assert_eq(wait_for(spawn(argv, env, log)), 1);
    char *text = read_text(log);
    cr_assert(strstr(text, needle), "'%s' lacks '%s'", text, needle);
    free(text);
}

Test(launchers, incomplete_variables)
{
    const char *env[] = {"RANK=1", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=1", NULL};
    refused(env, NULL, "torchrun environment is inconsistent: RANK=1, WORLD_SIZE=(unset)");
}

Test(launchers, launcher_world_is_not_the_config)
{
    const char *env[] = {"RANK=1", "WORLD_SIZE=3", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=1", NULL};
    refused(env, NULL, "torchrun started 3 ranks but pipeline.stages is 4");
}

Test(launchers, no_master_address)
{
    const char *env[] = {"RANK=1", "WORLD_SIZE=4", NULL};
    refused(env, NULL, "MASTER_ADDR:MASTER_PORT");
}

/* What a user sees when rank 0's host cannot be reached: one message with the address tried. */
Test(launchers, unreachable_rendezvous)
{
    char port[32], want[128];
    int p = free_port();
    snprintf(port, sizeof port, "MASTER_PORT=%d", p);
    snprintf(want, sizeof want,
             "sluice train: rank 2: could not reach the rendezvous at tcp://127.0.0.1:%d", p);
    const char *env[] = {"RANK=2", "WORLD_SIZE=4",          "MASTER_ADDR=127.0.0.1",
                         port,     "SLUICE_HOST=127.0.0.1", NULL};
    refused(env, "launch.timeout_s=2", want);
}

Test(launchers, rank_of_static_endpoints_needs_them)
{
    char *argv[40], set[512], log[600];
    argv[0] = "sluice";
    int n = 1 + train_args(argv, 1, "refused", set, sizeof set);
    argv[n++] = "--rank";
    argv[n++] = "1";
    argv[n] = NULL;
    snprintf(log, sizeof log, "%s/static-refused.log", outdir);
    cr_assert_eq(wait_for(spawn(argv, NULL, log)), 1);
    char *text = read_text(log);
    cr_assert(strstr(text, "--rank 1 needs launch.endpoints"), "%s", text);
    free(text);
}

/* ------------------------------------------------------------------------------------------------
 * Launcher environments */

Test(launchers, slurm_node_lists)
{
    char hosts[8][SL_LAUNCH_HOST_BYTES];
    int n;
    cr_assert_eq(sl_launch_slurm_hosts("node[01-04,07]", hosts, 8, &n), SL_OK);
    cr_assert_eq(n, 5);
    const char *want[] = {"node01", "node02", "node03", "node04", "node07"};
    for (int i = 0; i < 5; i++) cr_assert_str_eq(hosts[i], want[i]);
    cr_assert_eq(sl_launch_slurm_hosts("a1,gpu[8-9]-x,rack[1-2]-n[1-2]", hosts, 8, &n), SL_OK);
    cr_assert_eq(n, 7);
    const char *want2[] = {"a1", "gpu8-x", "gpu9-x", "rack1-n1", "rack1-n2", "rack2-n1"};
    for (int i = 0; i < 6; i++) cr_assert_str_eq(hosts[i], want2[i]);
    cr_assert_eq(sl_launch_slurm_hosts("node[001-1000]", hosts, 1, &n), SL_OK);
    cr_assert_eq(n, 1000);
    cr_assert_str_eq(hosts[0], "node001");
    const char *bad[] = {"node[1-", "node[a-b]", "node[3-1]", "", "n]", NULL};
    for (int i = 0; bad[i]; i++)
        cr_assert_eq(sl_launch_slurm_hosts(bad[i], hosts, 8, &n), SL_ECONFIG, "'%s'", bad[i]);
}

Test(launchers, slurm_master_from_the_node_list)
{
    setenv("SLURM_PROCID", "1", 1);
    setenv("SLURM_NTASKS", "4", 1);
    setenv("SLURM_JOB_ID", "1234", 1);
    setenv("SLURM_STEP_ID", "0", 1);
    setenv("SLURM_STEP_NODELIST", "node[07-09]", 1);
    sl_launch_info info;
    cr_assert_eq(sl_launch_detect(&info), SL_OK);
    cr_assert_eq(info.launcher, SL_LAUNCHER_SLURM);
    cr_assert_str_eq(info.job, "1234.0");
    char master[300];
    cr_assert_eq(sl_rendezvous_master(&info, master, sizeof master), SL_OK, "%s", sl_last_error());
    cr_assert_str_eq(master, "node07:21234");
    setenv("MASTER_ADDR", "head", 1);
    cr_assert_eq(sl_rendezvous_master(&info, master, sizeof master), SL_OK);
    cr_assert_str_eq(master, "head:21234");
}

Test(launchers, torchrun_job_id)
{
    setenv("RANK", "0", 1);
    setenv("WORLD_SIZE", "2", 1);
    setenv("TORCHELASTIC_RUN_ID", "abc\"def", 1);
    sl_launch_info info;
    cr_assert_eq(sl_launch_detect(&info), SL_OK);
    cr_assert_eq(info.launcher, SL_LAUNCHER_TORCHRUN);
    cr_assert_str_eq(info.job, "abc_def");
}
