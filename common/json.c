/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json: the writer grows one buffer (an allocation failure marks it, the caller checks once);
 * the parser walks the text once with an explicit end, never reads past len, and caps keys,
 * members and the line.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

/* ---- writer ---- */

static void buf_put(JsonBuf *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 512;
		char *grown;

		while (cap < b->len + n + 1)
			cap *= 2;
		grown = realloc(b->data, cap);
		if (!grown) {
			b->oom = true;
			return;
		}
		b->data = grown;
		b->cap = cap;
	}
	memcpy(b->data + b->len, s, n);
	b->len += n;
	b->data[b->len] = 0;
}

/* Length of the well-formed UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
	uint32_t cp;
	size_t len;

	if (s[0] < 0x80)
		return 1;
	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2, cp = s[0] & 0x1f;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3, cp = s[0] & 0x0f;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4, cp = s[0] & 0x07;
	else
		return 0;
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((s[i] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[i] & 0x3f);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

/* Bytes a JSON string holds as they are: printable ASCII but the quote and the backslash. */
static const bool plain[256] = {
	[0x20 ... 0x21] = true, /* '"' is 0x22 */
	[0x23 ... 0x5b] = true, /* '\\' is 0x5c */
	[0x5d ... 0x7e] = true,
};

void json_buf_quote(JsonBuf *b, const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t n = strlen(s);

	buf_put(b, "\"", 1);
	while (n) {
		char esc[8];
		size_t k;

		/* A run of printable ASCII that needs no escape goes in at once. */
		for (k = 0; k < n && plain[p[k]]; k++)
			;
		if (k) {
			buf_put(b, (const char *)p, k);
			p += k;
			n -= k;
			continue;
		}
		switch (*p) {
		case '"':
			buf_put(b, "\\\"", 2);
			break;
		case '\\':
			buf_put(b, "\\\\", 2);
			break;
		case '\n':
			buf_put(b, "\\n", 2);
			break;
		case '\r':
			buf_put(b, "\\r", 2);
			break;
		case '\t':
			buf_put(b, "\\t", 2);
			break;
		default:
			if (*p < 0x20 || *p == 0x7f) {
				snprintf(esc, sizeof(esc), "\\u%04x", *p);
				buf_put(b, esc, 6);
				break;
			}
			k = utf8_seq(p, n);
			if (k == 0) {
				buf_put(b, "\\ufffd", 6); /* one invalid byte */
				break;
			}
			buf_put(b, (const char *)p, k);
			p += k;
			n -= k;
			continue;
		}
		p++;
		n--;
	}
	buf_put(b, "\"", 1);
}

void json_buf_begin(JsonBuf *b)
{
	*b = (JsonBuf){0};
	buf_put(b, "{", 1);
}

void json_buf_end(JsonBuf *b)
{
	buf_put(b, "}", 1);
}

void json_buf_deinit(JsonBuf *b)
{
	free(b->data);
	*b = (JsonBuf){0};
}

static void member(JsonBuf *b, const char *key)
{
	if (b->n_members++)
		buf_put(b, ",", 1);
	json_buf_quote(b, key);
	buf_put(b, ":", 1);
}

void json_buf_string(JsonBuf *b, const char *key, const char *value)
{
	member(b, key);
	if (value)
		json_buf_quote(b, value);
	else
		buf_put(b, "null", 4);
}

void json_buf_int(JsonBuf *b, const char *key, int64_t value)
{
	char num[24], *p = num + sizeof(num);
	/* The magnitude as unsigned: -INT64_MIN does not fit an int64_t. */
	uint64_t u = value < 0 ? -(uint64_t)value : (uint64_t)value;

	do
		*--p = (char)('0' + u % 10);
	while (u /= 10);
	if (value < 0)
		*--p = '-';
	member(b, key);
	buf_put(b, p, (size_t)(num + sizeof(num) - p));
}

/* ---- parser ---- */

typedef struct Cursor {
	const char *p;
	const char *end;
} Cursor;

static void skip_ws(Cursor *c)
{
	while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\r' || *c->p == '\n'))
		c->p++;
}

static int hex4(Cursor *c, uint32_t *ret)
{
	uint32_t v = 0;

	if (c->end - c->p < 4)
		return -EINVAL;
	for (int i = 0; i < 4; i++) {
		char h = *c->p++;

		v <<= 4;
		if (h >= '0' && h <= '9')
			v |= (uint32_t)(h - '0');
		else if (h >= 'a' && h <= 'f')
			v |= (uint32_t)(h - 'a' + 10);
		else if (h >= 'A' && h <= 'F')
			v |= (uint32_t)(h - 'A' + 10);
		else
			return -EINVAL;
	}
	*ret = v;
	return 0;
}

static size_t utf8_put(uint32_t cp, char *out)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string at c->p (on the opening quote); decoded into a new buffer of at most max bytes. */
static int parse_string(Cursor *c, size_t max, char **ret)
{
	_cleanup_free_ char *out = NULL;
	size_t n = 0, cap;

	if (c->p >= c->end || *c->p != '"')
		return -EINVAL;
	c->p++;
	/* Decoding never makes a string longer than its escaped form. */
	cap = (size_t)(c->end - c->p) + 1;
	if (cap > max + 1)
		cap = max + 1;
	out = malloc(cap + 4);
	if (!out)
		return -ENOMEM;
	for (;;) {
		unsigned char ch;
		size_t k;

		if (c->p >= c->end)
			return -EINVAL;
		ch = (unsigned char)*c->p;
		if (ch == '"') {
			c->p++;
			break;
		}
		if (n >= max)
			return -E2BIG;
		if (ch < 0x20)
			return -EINVAL;
		if (ch != '\\') {
			k = utf8_seq((const unsigned char *)c->p, (size_t)(c->end - c->p));
			if (k == 0)
				return -EINVAL;
			if (n + k > max)
				return -E2BIG;
			memcpy(out + n, c->p, k);
			n += k;
			c->p += k;
			continue;
		}
		c->p++;
		if (c->p >= c->end)
			return -EINVAL;
		ch = (unsigned char)*c->p++;
		switch (ch) {
		case '"':
		case '\\':
		case '/':
			out[n++] = (char)ch;
			break;
		case 'b':
			out[n++] = '\b';
			break;
		case 'f':
			out[n++] = '\f';
			break;
		case 'n':
			out[n++] = '\n';
			break;
		case 'r':
			out[n++] = '\r';
			break;
		case 't':
			out[n++] = '\t';
			break;
		case 'u': {
			uint32_t cp, lo;

			if (hex4(c, &cp) < 0)
				return -EINVAL;
			if (cp >= 0xdc00 && cp <= 0xdfff)
				return -EINVAL;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (c->end - c->p < 2 || c->p[0] != '\\' || c->p[1] != 'u')
					return -EINVAL;
				c->p += 2;
				if (hex4(c, &lo) < 0 || lo < 0xdc00 || lo > 0xdfff)
					return -EINVAL;
				cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
			}
			k = utf8_put(cp, out + n);
			if (n + k > max)
				return -E2BIG;
			n += k;
			break;
		}
		default:
			return -EINVAL;
		}
	}
	out[n] = 0;
	*ret = TAKE_PTR(out);
	return 0;
}

/* -?(0|[1-9][0-9]*), fitting int64_t; no fraction, no exponent. */
static int parse_int(Cursor *c, int64_t *ret)
{
	bool neg = false;
	uint64_t v = 0, limit;

	if (c->p < c->end && *c->p == '-') {
		neg = true;
		c->p++;
	}
	if (c->p >= c->end || *c->p < '0' || *c->p > '9')
		return -EINVAL;
	if (*c->p == '0' && c->end - c->p > 1 && c->p[1] >= '0' && c->p[1] <= '9')
		return -EINVAL;
	limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
	while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
		unsigned d = (unsigned)(*c->p++ - '0');

		if (v > (limit - d) / 10)
			return -E2BIG;
		v = v * 10 + d;
	}
	if (c->p < c->end && (*c->p == '.' || *c->p == 'e' || *c->p == 'E'))
		return -EINVAL;
	*ret = neg ? (int64_t)(0 - v) : (int64_t)v;
	return 0;
}

static bool literal(Cursor *c, const char *word)
{
	size_t n = strlen(word);

	if ((size_t)(c->end - c->p) < n || memcmp(c->p, word, n) != 0)
		return false;
	c->p += n;
	return true;
}

void json_object_clear(JsonObject *o)
{
	for (size_t i = 0; i < o->n; i++) {
		free(o->fields[i].key);
		free(o->fields[i].str);
	}
	o->n = 0;
}

static void json_object_clearp(JsonObject **o)
{
	if (*o)
		json_object_clear(*o);
}

const JsonField *json_object_get(const JsonObject *o, const char *key)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->fields[i].key, key) == 0)
			return &o->fields[i];
	return NULL;
}

int json_flat_parse(const char *text, size_t len, JsonObject *ret)
{
	JsonObject obj = {.n = 0};
	_cleanup_(json_object_clearp) JsonObject *guard = &obj;
	Cursor c = {text, text + len};
	int r;

	if (!text || len > JSON_LINE_MAX)
		return text ? -E2BIG : -EINVAL;
	skip_ws(&c);
	if (c.p >= c.end || *c.p++ != '{')
		return -EINVAL;
	skip_ws(&c);
	if (c.p < c.end && *c.p == '}') {
		c.p++;
	} else {
		for (;;) {
			JsonField *f;

			if (obj.n >= JSON_FIELDS_MAX)
				return -E2BIG;
			f = &obj.fields[obj.n];
			*f = (JsonField){0};
			skip_ws(&c);
			r = parse_string(&c, JSON_KEY_MAX, &f->key);
			if (r < 0)
				return r;
			obj.n++; /* owns the key now */
			if (!f->key[0] || strlen(f->key) >= JSON_KEY_MAX)
				return -EINVAL;
			for (size_t i = 0; i + 1 < obj.n; i++)
				if (strcmp(obj.fields[i].key, f->key) == 0)
					return -EINVAL;
			skip_ws(&c);
			if (c.p >= c.end || *c.p++ != ':')
				return -EINVAL;
			skip_ws(&c);
			if (c.p >= c.end)
				return -EINVAL;
			if (*c.p == '"') {
				f->type = JSON_STRING;
				r = parse_string(&c, JSON_LINE_MAX, &f->str);
			} else if (*c.p == '-' || (*c.p >= '0' && *c.p <= '9')) {
				f->type = JSON_INT;
				r = parse_int(&c, &f->num);
			} else if (literal(&c, "null")) {
				f->type = JSON_NULL;
				r = 0;
			} else if (literal(&c, "true") || literal(&c, "false")) {
				f->type = JSON_BOOL;
				f->num = c.p[-1] == 'e' && c.p[-2] == 'u';
				r = 0;
			} else {
				r = -EINVAL;
			}
			if (r < 0)
				return r;
			skip_ws(&c);
			if (c.p >= c.end)
				return -EINVAL;
			if (*c.p == ',') {
				c.p++;
				continue;
			}
			if (*c.p++ != '}')
				return -EINVAL;
			break;
		}
	}
	skip_ws(&c);
	if (c.p != c.end)
		return -EINVAL;
	*ret = obj;
	guard = NULL;
	return 0;
}
