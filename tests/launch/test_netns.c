/* Hosts, not just processes: 4 ranks, each in its own Linux network namespace with its own
 * address (10.77.0.1-4 on a bridge in a fifth namespace, joined by veth pairs), started with
 * torchrun's variables and trained over tcp with CURVE; the run equals the local one. A rank whose
 * rendezvous host does not exist fails with one message naming the address it tried. Needs root
 * and iproute2 (CI runs as root); otherwise the tests are skipped and say why. */
#include <stdarg.h>

#include "tests/launch/run.h"

static char ns[8][32]; /* the ranks' namespaces, then the switch's */

static int sh(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof cmd, fmt, ap);
    va_end(ap);
    return system(cmd);
}

/* Makes the namespaces: rank r's holds eth0 = 10.77.0.(r+1)/24, whose peer sits on the bridge
 * br0 of the switch namespace. */
static void make_hosts(int n)
{
    if (geteuid() != 0) launchers_skip("network namespaces need root (CI runs as root)");
    if (!have("ip")) launchers_skip("ip is not installed (Debian: iproute2)");
    int pid = (int)getpid();
    for (int r = 0; r <= n; r++)
        snprintf(ns[r], sizeof ns[r], "sluice-%d-%s%d", pid, r == n ? "sw" : "h", r);
    if (sh("ip netns add %s 2>/dev/null", ns[n]) != 0)
        launchers_skip("cannot make a network namespace here (ip netns add failed)");
    cr_assert_eq(sh("ip -n %s link add br0 type bridge && ip -n %s link set br0 up && "
                    "ip -n %s link set lo up",
                    ns[n], ns[n], ns[n]),
                 0);
    for (int r = 0; r < n; r++) {
        cr_assert_eq(sh("ip netns add %s && ip -n %s link set lo up && "
                        "ip -n %s link add eth0 type veth peer name p%d netns %s && "
                        "ip -n %s addr add 10.77.0.%d/24 dev eth0 && ip -n %s link set eth0 up && "
                        "ip -n %s link set p%d master br0 && ip -n %s link set p%d up",
                        ns[r], ns[r], ns[r], r, ns[n], ns[r], r + 1, ns[r], ns[n], r, ns[n], r),
                     0, "cannot make host %d", r);
    }
}

static void remove_hosts(void)
{
    for (int r = 0; r < 8; r++)
        if (ns[r][0]) sh("ip netns delete %s 2>/dev/null", ns[r]);
    memset(ns, 0, sizeof ns);
}

static void setup(void)
{
    launchers_setup();
}

static void teardown(void)
{
    remove_hosts();
    launchers_teardown();
}

TestSuite(netns, .init = setup, .fini = teardown, .timeout = 0);

/* Rank r of `argv` in its namespace with torchrun's variables: `ip netns exec NS env ... argv`. */
static pid_t start_rank(int r, char *const *train, const char *master, const char *log)
{
    char *argv[64], env[6][64];
    int n = 0;
    argv[n++] = "ip";
    argv[n++] = "netns";
    argv[n++] = "exec";
    argv[n++] = ns[r];
    argv[n++] = "env";
    snprintf(env[0], sizeof env[0], "RANK=%d", r);
    snprintf(env[1], sizeof env[1], "WORLD_SIZE=%d", RANKS);
    snprintf(env[2], sizeof env[2], "MASTER_ADDR=%s", master);
    snprintf(env[3], sizeof env[3], "MASTER_PORT=29500");
    snprintf(env[4], sizeof env[4], "SLUICE_HOST=10.77.0.%d", r + 1);
    snprintf(env[5], sizeof env[5], "TORCHELASTIC_RUN_ID=netns");
    for (int i = 0; i < 6; i++) argv[n++] = env[i];
    argv[n++] = getenv("SLUICE_EXE");
    for (int i = 0; train[i]; i++) argv[n++] = train[i];
    argv[n] = NULL;
    return spawn(argv, NULL, log);
}

Test(netns, four_hosts_over_curve_equal_local)
{
    make_hosts(RANKS);
    local_run();
    char keys[600], keys_set[700], log[600], set[512], *train[40];
    snprintf(keys, sizeof keys, "%s/keys", outdir);
    cr_assert_eq(sh("\"%s\" keys -n %d --out \"%s\" >/dev/null", getenv("SLUICE_EXE"), RANKS, keys),
                 0);
    snprintf(keys_set, sizeof keys_set, "launch.keys=\"%s\"", keys);
    int n = train_args(train, 0, "netns", set, sizeof set);
    train[n++] = "--set";
    train[n++] = "launch.curve=true";
    train[n++] = "--set";
    train[n++] = keys_set;
    train[n] = NULL;
    snprintf(log, sizeof log, "%s/netns.log", outdir);
    pid_t pids[RANKS];
    for (int r = 0; r < RANKS; r++) pids[r] = start_rank(r, train, "10.77.0.1", log);
    for (int r = 0; r < RANKS; r++)
        cr_assert_eq(wait_for(pids[r]), 0, "rank %d failed:\n%s", r, read_text(log));
    assert_equals_local("netns", log);
}

/* Rank 1's MASTER_ADDR names an address no host has: it tries with backoff until
 * launch.timeout_s, then says which address it tried. */
Test(netns, unreachable_host_is_named)
{
    make_hosts(2);
    char log[600], set[512], *train[40];
    int n = train_args(train, 0, "unreachable", set, sizeof set);
    train[n++] = "--set";
    train[n++] = "launch.timeout_s=3";
    train[n] = NULL;
    snprintf(log, sizeof log, "%s/unreachable.log", outdir);
    cr_assert_eq(wait_for(start_rank(1, train, "10.77.0.99", log)), 1);
    char *text = read_text(log);
    cr_assert(strstr(text, "sluice train: rank 1: could not reach the rendezvous at "
                           "tcp://10.77.0.99:29500 within 3 s"),
              "%s", text);
    free(text);
}
