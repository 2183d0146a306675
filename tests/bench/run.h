/* Shared by the bench suites: the sluice tool run as a subprocess. */
#ifndef SL_TEST_BENCH_RUN_H
#define SL_TEST_BENCH_RUN_H

#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Runs `sluice ARGS` through the shell (SLUICE_EXE, which ctest sets, is the tool; ARGS formatted
 * like printf, redirections allowed) and returns its stdout (malloc'd) and exit status. */
__attribute__((format(printf, 2, 3))) static char *run_sluice(int *status, const char *fmt, ...)
{
    const char *exe = getenv("SLUICE_EXE");
    cr_assert_not_null(exe, "SLUICE_EXE is not set (ctest sets it)");
    char args[1536], cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof cmd, "'%s' %s", exe, args);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    cr_assert_not_null(buf);
    size_t n;
    while ((n = fread(buf + len, 1, cap - 1 - len, p)) > 0) {
        len += n;
        if (len + 1 == cap) buf = realloc(buf, cap *= 2);
        cr_assert_not_null(buf);
    }
    buf[len] = 0;
    int ws = pclose(p);
    *status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
    return buf;
}

#endif
