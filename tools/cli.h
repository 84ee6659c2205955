/* SPDX-License-Identifier: MIT */
/* cli.h - what the shmwal command's files share (defined in shmwal.c). */
#ifndef SHMWAL_CLI_H
#define SHMWAL_CLI_H

#include <stdint.h>

#define EXIT_USAGE 2

void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prints "shmwal: WHAT: <shmwal_last_error() or strerror(-rc)>"; returns 1. */
int fail(const char *what, int rc);
/* "123", "64K", "4M", "1G" (binary units). 0 or -1. */
int parse_size(const char *s, uint64_t *out);
int parse_u32(const char *s, uint32_t *out);
/* An option with a value: --name=value or --name value (advances *i); NULL if argv[*i] is
 * not that option. */
const char *optval(int argc, char **argv, int *i, const char *name);
int usage_error(const char *cmd, const char *arg);
int is_help(const char *a);

/* tools/stat.c */
int cmd_stat(int argc, char **argv);
int cmd_retention(int argc, char **argv);

#endif
