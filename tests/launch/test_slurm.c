/* Slurm: the test starts a one-node cluster of its own (munged, slurmctld and slurmd in the
 * foreground, with a config it writes into a private directory and ports of its own), runs
 * `srun -n 4 sluice train ...` on it, and stops every daemon at the end. The ranks find the
 * rendezvous on the first host of the step's node list (SLURM_STEP_NODELIST, expanded); the run's
 * losses and final weights equal the local run's. Without Slurm and munge installed, or without
 * root (slurmd runs the ranks as root here), the test is skipped and says why. */
#include "tests/launch/run.h"

#include <signal.h>

TestSuite(slurm, .init = launchers_setup, .fini = launchers_teardown, .timeout = 0);

enum { MUNGED, SLURMCTLD, SLURMD, NDAEMONS };
static pid_t daemons[NDAEMONS];

static void stop_cluster(void)
{
    for (int i = NDAEMONS - 1; i >= 0; i--) {
        if (daemons[i] <= 0) continue;
        kill(daemons[i], SIGTERM);
        waitpid(daemons[i], NULL, 0);
        daemons[i] = 0;
    }
}

/* Writes the cluster's config into dir and starts its daemons; SLURM_CONF names the config. */
static void start_cluster(const char *dir)
{
    char host[256], path[700], key[700], sock[700];
    cr_assert_eq(gethostname(host, sizeof host), 0);
    host[strcspn(host, ".")] = '\0';
    snprintf(key, sizeof key, "%s/munge.key", dir);
    snprintf(sock, sizeof sock, "%s/munge.sock", dir);
    unsigned char secret[1024];
    FILE *r = fopen("/dev/urandom", "rb");
    cr_assert(r && fread(secret, 1, sizeof secret, r) == sizeof secret);
    fclose(r);
    cr_assert_eq(sl_write_file(key, secret, sizeof secret, 0600), SL_OK);
    int ctld = free_port(), slurmd = free_port();
    snprintf(path, sizeof path, "%s/slurm.conf", dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fprintf(f,
            "ClusterName=sluicetest\nSlurmctldHost=%s(127.0.0.1)\nSlurmctldPort=%d\n"
            "SlurmdPort=%d\nAuthType=auth/munge\nAuthInfo=socket=%s\nCredType=cred/munge\n"
            "StateSaveLocation=%s\nSlurmdSpoolDir=%s\nSlurmctldPidFile=%s/slurmctld.pid\n"
            "SlurmdPidFile=%s/slurmd.pid\nSlurmctldLogFile=%s/slurmctld.log\n"
            "SlurmdLogFile=%s/slurmd.log\nSlurmUser=root\nSlurmdUser=root\n"
            "ProctrackType=proctrack/linuxproc\nTaskPlugin=task/none\nSwitchType=switch/none\n"
            "MpiDefault=none\nReturnToService=2\nSchedulerType=sched/builtin\n"
            "SelectType=select/cons_tres\nSelectTypeParameters=CR_CPU\n"
            "SlurmdParameters=config_overrides\nJobCompType=jobcomp/none\n"
            "AccountingStorageType=accounting_storage/none\n"
            "NodeName=%s NodeAddr=127.0.0.1 CPUs=%d State=UNKNOWN\n"
            "PartitionName=test Nodes=%s Default=YES MaxTime=INFINITE State=UP "
            "OverSubscribe=YES\n",
            host, ctld, slurmd, sock, dir, dir, dir, dir, dir, dir, host, RANKS, host);
    fclose(f);
    setenv("SLURM_CONF", path, 1);
    char log[700], pid[700], seed[700], keyarg[720], sockarg[720], logarg[720], pidarg[720],
        seedarg[720];
    snprintf(log, sizeof log, "%s/daemons.log", dir);
    snprintf(pid, sizeof pid, "%s/munged.pid", dir);
    snprintf(seed, sizeof seed, "%s/munged.seed", dir);
    snprintf(keyarg, sizeof keyarg, "--key-file=%s", key);
    snprintf(sockarg, sizeof sockarg, "--socket=%s", sock);
    snprintf(logarg, sizeof logarg, "--log-file=%s/munged.log", dir);
    snprintf(pidarg, sizeof pidarg, "--pid-file=%s", pid);
    snprintf(seedarg, sizeof seedarg, "--seed-file=%s", seed);
    char *munged[] = {"munged", "-F", "--force", keyarg, sockarg, logarg, pidarg, seedarg, NULL};
    char *slurmctld[] = {"slurmctld", "-D", "-i", "-f", path, NULL};
    char *slurmd_argv[] = {"slurmd", "-D", "-f", path, "-N", host, NULL};
    daemons[MUNGED] = spawn(munged, NULL, log);
    daemons[SLURMCTLD] = spawn(slurmctld, NULL, log);
    daemons[SLURMD] = spawn(slurmd_argv, NULL, log);
    /* Ready when the node is idle (bounded, so that a broken cluster fails rather than hangs). */
    char state[64] = "";
    for (int i = 0; i < 600 && strncmp(state, "idle", 4); i++) {
        FILE *p = popen("sinfo -h -o %t 2>/dev/null", "r");
        if (!p || !fgets(state, sizeof state, p)) state[0] = '\0';
        if (p) pclose(p);
        if (strncmp(state, "idle", 4)) usleep(100000);
    }
    cr_assert(!strncmp(state, "idle", 4), "the test's Slurm node never became idle:\n%s",
              read_text(log));
}

Test(slurm, srun_4_ranks_equal_local, .fini = stop_cluster)
{
    const char *missing = NULL;
    const char *progs[] = {"srun", "sinfo", "slurmctld", "slurmd", "munged", NULL};
    for (int i = 0; progs[i] && !missing; i++)
        if (!have(progs[i])) missing = progs[i];
    if (missing)
        launchers_skip("%s is not installed (Debian: slurmctld slurmd slurm-client munge)",
                       missing);
    if (geteuid() != 0) launchers_skip("the test's Slurm cluster runs its daemons as root");
    local_run();
    char dir[600];
    snprintf(dir, sizeof dir, "%s/cluster", outdir);
    cr_assert_eq(sl_mkdir_p(dir), SL_OK);
    start_cluster(dir);
    char *argv[40], set[512], log[600];
    char *head[] = {"srun", "-n", "4", "sluice"};
    for (int i = 0; i < 4; i++) argv[i] = head[i];
    argv[3] = getenv("SLUICE_EXE");
    train_args(argv, 4, "srun", set, sizeof set);
    snprintf(log, sizeof log, "%s/srun.log", outdir);
    cr_assert_eq(wait_for(spawn(argv, NULL, log)), 0, "srun failed:\n%s", read_text(log));
    assert_equals_local("srun", log);
}
