/* The sluice command-line tool: one function per subcommand. Each takes the arguments after the
 * program name (argv[0] is the subcommand's name) and returns the process exit status:
 * 0 success, 1 the work failed, 2 the command line was wrong. */
#ifndef SL_CLI_H
#define SL_CLI_H

int sl_cmd_devices(int argc, char **argv);
int sl_cmd_schedule(int argc, char **argv);
int sl_cmd_plan(int argc, char **argv);
int sl_cmd_train(int argc, char **argv);
int sl_cmd_trace(int argc, char **argv);
int sl_cmd_keys(int argc, char **argv);
int sl_cmd_bench(int argc, char **argv);
int sl_cmd_sample(int argc, char **argv);

/* True when argv[1..] holds -h or --help. */
int sl_cli_wants_help(int argc, char **argv);

/* Prints "sluice <cmd>: <message from sl_last_error() or sl_strerror(status)>" to stderr and
 * returns exit status 1. */
int sl_cli_error(const char *cmd, int status);

#endif
