/* SPDX-License-Identifier: MIT */
/*
 * cli.h - what the files of the shmwal command share: messages, argument parsing, the way
 * records print, and the commands that live outside shmwal.c (dump.c, check.c, stat.c).
 * Exit status: 0 success; 1 failure (the message says why), or damage found; EXIT_USAGE
 * (2) bad usage.
 */
#ifndef SHMWAL_CLI_H
#define SHMWAL_CLI_H

#include <stdint.h>
#include <stdio.h>

#define EXIT_USAGE 2

/* "shmwal: <message>" on stderr. */
void die_msg(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* "shmwal: what: <shmwal_last_error(), or strerror(-rc)>" on stderr; returns 1. */
int fail(const char *what, int rc);
/* An unexpected argument or value: says so and returns EXIT_USAGE. */
int usage_error(const char *cmd, const char *arg);
int is_help(const char *a);
/* An option with a value: --name=value or --name value (advances *i). NULL if argv[*i] is
 * not that option. */
const char *optval(int argc, char **argv, int *i, const char *name);
/* For commands whose only argument is DIR: -1 to go on with *dir set, or the exit status. */
int dir_only_args(int argc, char **argv, const char *cmd, const char *help, const char **dir);

/* "123", "64K", "4M", "1G" (binary units). 0 or -1. */
int parse_size(const char *s, uint64_t *out);
/* parse_size, at most UINT32_MAX. 0 or -1. */
int parse_u32(const char *s, uint32_t *out);
/* An LSN: decimal, or hexadecimal after 0x. 0 or -1. */
int parse_num(const char *s, uint64_t *out);
/* parse_num, or "oldest" (SHMWAL_LSN_OLDEST) or "end" (SHMWAL_LSN_END). */
int parse_lsn(const char *s, uint64_t *out);

/* Up to max bytes: "text" when printable ASCII without quotes and backslashes, else 0xHEX;
 * "..." when cut. */
void print_bytes(FILE *f, const void *p, uint32_t len, uint32_t max);
/* PUT, DELETE or USER<n>; buf holds 16 bytes. */
const char *type_name(uint16_t t, char *buf);
/* RFC 3339 in UTC with nanoseconds: 2026-11-22T08:26:40.123456789Z; buf holds 40 bytes. */
const char *time_rfc3339(uint64_t ns, char *buf, size_t len);

int cmd_dump(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_repair(int argc, char **argv);
int cmd_truncate(int argc, char **argv);
/* stat.c */
int cmd_stat(int argc, char **argv);
int cmd_retention(int argc, char **argv);

#endif
