/* SPDX-License-Identifier: MIT */
/*
 * json.h - a strict JSON parser for tests that read what programs print (test_cli: `shmwal
 * dump --json`): one JSON object (RFC 8259) whose members are strings or unsigned integers.
 * Strings are decoded (every escape, \u with surrogate pairs) to UTF-8 bytes; raw control
 * characters, bad escapes, lone surrogates, invalid UTF-8, leading zeros, fractions, duplicate
 * names and anything after the object are errors. Header-only: include it in one test.
 */
#ifndef SHMWAL_TEST_JSON_H
#define SHMWAL_TEST_JSON_H

#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define JMAX 24

struct jmember {
	char name[32];
	int is_str;
	uint64_t num;
	uint8_t *str; /* decoded, NUL-terminated (may hold NULs: see len) */
	size_t len;
};

struct jobj {
	int n;
	struct jmember m[JMAX];
};

static inline void jobj_free(struct jobj *o)
{
	for (int i = 0; i < o->n; i++)
		free(o->m[i].str);
	o->n = 0;
}

struct jp {
	const unsigned char *s;
	size_t i, len;
	const char *err;
};

static inline void jws(struct jp *p)
{
	while (p->i < p->len && strchr(" \t\r\n", p->s[p->i]) && p->s[p->i])
		p->i++;
}

static inline int jfail(struct jp *p, const char *err)
{
	if (!p->err)
		p->err = err;
	return -1;
}

static inline int hex4(struct jp *p, unsigned *v)
{
	*v = 0;
	if (p->len - p->i < 4)
		return jfail(p, "short \\u escape");
	for (int k = 0; k < 4; k++) {
		int c = p->s[p->i++];

		if (!isxdigit(c))
			return jfail(p, "bad \\u escape");
		*v = *v << 4 | (unsigned)(isdigit(c) ? c - '0' : (tolower(c) - 'a' + 10));
	}
	return 0;
}

static inline void put_utf8(uint8_t *out, size_t *n, unsigned cp)
{
	if (cp < 0x80) {
		out[(*n)++] = (uint8_t)cp;
	} else if (cp < 0x800) {
		out[(*n)++] = (uint8_t)(0xc0 | cp >> 6);
		out[(*n)++] = (uint8_t)(0x80 | (cp & 0x3f));
	} else if (cp < 0x10000) {
		out[(*n)++] = (uint8_t)(0xe0 | cp >> 12);
		out[(*n)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (uint8_t)(0x80 | (cp & 0x3f));
	} else {
		out[(*n)++] = (uint8_t)(0xf0 | cp >> 18);
		out[(*n)++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3f));
		out[(*n)++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3f));
		out[(*n)++] = (uint8_t)(0x80 | (cp & 0x3f));
	}
}

/* Length of the well-formed UTF-8 sequence at s (up to avail bytes), 0 if there is none. */
static inline size_t utf8_seq(const unsigned char *s, size_t avail)
{
	unsigned c = s[0], cp, min;
	size_t len;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		len = 2, cp = c & 0x1f, min = 0x80;
	else if (c >= 0xe0 && c <= 0xef)
		len = 3, cp = c & 0x0f, min = 0x800;
	else if (c >= 0xf0 && c <= 0xf4)
		len = 4, cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (avail < len)
		return 0;
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3fu);
	}
	return cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff) ? 0 : len;
}

/* A string at p (at its opening quote): decoded into a new buffer. */
static inline int jstring(struct jp *p, uint8_t **out, size_t *outlen)
{
	uint8_t *b;
	size_t n = 0;

	if (p->i >= p->len || p->s[p->i] != '"')
		return jfail(p, "expected a string");
	p->i++;
	b = malloc(p->len - p->i + 1); /* decoding never grows a string */
	if (!b)
		abort();
	for (;;) {
		unsigned c, cp, lo;
		size_t k;

		if (p->i >= p->len) {
			free(b);
			return jfail(p, "unterminated string");
		}
		c = p->s[p->i];
		if (c == '"') {
			p->i++;
			break;
		}
		if (c < 0x20) {
			free(b);
			return jfail(p, "raw control character in a string");
		}
		if (c >= 0x80) {
			k = utf8_seq(p->s + p->i, p->len - p->i);
			if (!k) {
				free(b);
				return jfail(p, "invalid UTF-8 in a string");
			}
			memcpy(b + n, p->s + p->i, k);
			n += k;
			p->i += k;
			continue;
		}
		p->i++;
		if (c != '\\') {
			b[n++] = (uint8_t)c;
			continue;
		}
		if (p->i >= p->len) {
			free(b);
			return jfail(p, "unterminated escape");
		}
		switch (c = p->s[p->i++]) {
		case '"':
		case '\\':
		case '/':
			b[n++] = (uint8_t)c;
			break;
		case 'b':
			b[n++] = '\b';
			break;
		case 'f':
			b[n++] = '\f';
			break;
		case 'n':
			b[n++] = '\n';
			break;
		case 'r':
			b[n++] = '\r';
			break;
		case 't':
			b[n++] = '\t';
			break;
		case 'u':
			if (hex4(p, &cp) < 0) {
				free(b);
				return -1;
			}
			if (cp >= 0xdc00 && cp <= 0xdfff) {
				free(b);
				return jfail(p, "lone low surrogate");
			}
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (p->len - p->i < 2 || p->s[p->i] != '\\' ||
				    p->s[p->i + 1] != 'u') {
					free(b);
					return jfail(p, "lone high surrogate");
				}
				p->i += 2;
				if (hex4(p, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff) {
					free(b);
					return jfail(p, "bad surrogate pair");
				}
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			put_utf8(b, &n, cp);
			break;
		default:
			free(b);
			return jfail(p, "unknown escape");
		}
	}
	b[n] = '\0';
	*out = b;
	*outlen = n;
	return 0;
}

static inline int json_parse(const char *line, size_t len, struct jobj *o, const char **err)
{
	struct jp p = {(const unsigned char *)line, 0, len, NULL};

	o->n = 0;
	jws(&p);
	if (p.i >= len || p.s[p.i++] != '{')
		return *err = "expected {", -1;
	jws(&p);
	if (p.i < len && p.s[p.i] == '}') {
		p.i++;
	} else {
		for (;;) {
			struct jmember *m;
			uint8_t *name;
			size_t nlen;

			if (o->n == JMAX)
				return *err = "too many members", -1;
			m = &o->m[o->n];
			memset(m, 0, sizeof(*m));
			jws(&p);
			if (jstring(&p, &name, &nlen) < 0)
				return *err = p.err, -1;
			if (nlen >= sizeof(m->name) || memchr(name, 0, nlen)) {
				free(name);
				return *err = "bad member name", -1;
			}
			memcpy(m->name, name, nlen + 1);
			free(name);
			for (int j = 0; j < o->n; j++)
				if (!strcmp(o->m[j].name, m->name))
					return *err = "duplicate member", -1;
			jws(&p);
			if (p.i >= len || p.s[p.i++] != ':')
				return *err = "expected :", -1;
			jws(&p);
			if (p.i < len && p.s[p.i] == '"') {
				if (jstring(&p, &m->str, &m->len) < 0)
					return *err = p.err, -1;
				m->is_str = 1;
			} else if (p.i < len && isdigit(p.s[p.i])) {
				if (p.s[p.i] == '0' && p.i + 1 < len && isdigit(p.s[p.i + 1]))
					return *err = "leading zero", -1;
				while (p.i < len && isdigit(p.s[p.i])) {
					unsigned d = p.s[p.i++] - '0';

					if (m->num > (UINT64_MAX - d) / 10)
						return *err = "number too large", -1;
					m->num = m->num * 10 + d;
				}
				if (p.i < len && strchr(".eE", p.s[p.i]) && p.s[p.i])
					return *err = "not an integer", -1;
			} else {
				return *err = "unexpected value (only strings and integers)", -1;
			}
			o->n++;
			jws(&p);
			if (p.i < len && p.s[p.i] == ',') {
				p.i++;
				continue;
			}
			if (p.i < len && p.s[p.i] == '}') {
				p.i++;
				break;
			}
			return *err = "expected , or }", -1;
		}
	}
	jws(&p);
	if (p.i != len)
		return *err = "text after the object", -1;
	return 0;
}

#endif
