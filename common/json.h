/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * json: just enough JSON for the audit log — a writer that escapes every string (control
 * characters, quotes, invalid UTF-8 → U+FFFD) and a strict, bounded parser for the one shape
 * the log holds: a flat object whose values are strings, integers, booleans or null. Nothing
 * nested, no floats, no duplicate keys, nothing after the closing brace. The agent writes,
 * the CLI reads (and the fuzzers feed the reader).
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define JSON_LINE_MAX 65536 /* bytes of one object (the audit writer stays far below) */
#define JSON_FIELDS_MAX 32  /* members of one object */
#define JSON_KEY_MAX 64	    /* bytes of a key */

/* ---- writer ---- */

typedef struct JsonBuf {
	char *data; /* NUL-terminated */
	size_t len;
	size_t cap;
	bool oom; /* a write failed: the buffer is incomplete */
	unsigned n_members;
} JsonBuf;

void json_buf_begin(JsonBuf *b);		/* "{" */
void json_buf_end(JsonBuf *b);			/* "}" */
void json_buf_deinit(JsonBuf *b);
/* "key": "value" (NULL value: null). */
void json_buf_string(JsonBuf *b, const char *key, const char *value);
void json_buf_int(JsonBuf *b, const char *key, int64_t value);
/* Appends s as a JSON string literal, quotes included. */
void json_buf_quote(JsonBuf *b, const char *s);

/* ---- parser ---- */

typedef enum JsonType {
	JSON_NULL = 1,
	JSON_BOOL,
	JSON_INT,
	JSON_STRING,
} JsonType;

typedef struct JsonField {
	char *key;
	JsonType type;
	char *str;   /* JSON_STRING: decoded UTF-8, NUL-terminated (a \u0000 ends it early) */
	int64_t num; /* JSON_INT; JSON_BOOL: 0 or 1 */
} JsonField;

typedef struct JsonObject {
	JsonField fields[JSON_FIELDS_MAX];
	size_t n;
} JsonObject;

/*
 * Parses text[0..len) (one line, trailing white space allowed) as a flat object.
 * Returns 0, -EINVAL (not such an object), -E2BIG (over a cap) or -ENOMEM; on failure *ret
 * holds nothing.
 */
int json_flat_parse(const char *text, size_t len, JsonObject *ret);
void json_object_clear(JsonObject *o);
const JsonField *json_object_get(const JsonObject *o, const char *key);
