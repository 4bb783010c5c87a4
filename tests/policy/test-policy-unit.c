/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Unit tests of the pieces of the policy and audit work that need no agent: the JSON writer
 * and strict reader (common/json.c), the audit line and time parsers (cli/audit-read.c), and
 * the "sign only what TLS needs" checks (common/scheme.c: Ed25519 framing, SHA-1 refusal).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>

#include "audit-read.h"
#include "json.h"
#include "scheme.h"

static int failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static void test_json_roundtrip(void)
{
	static const char *const strings[] = {
		"plain", "", "quote \" and \\ backslash", "line\nbreak\ttab\rcr",
		"\x01\x1f\x7f controls", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x94\x91", "/slash/",
	};

	for (size_t i = 0; i < sizeof(strings) / sizeof(strings[0]); i++) {
		JsonBuf b;
		JsonObject o;
		const JsonField *f;

		json_buf_begin(&b);
		json_buf_string(&b, "s", strings[i]);
		json_buf_int(&b, "n", -42);
		json_buf_string(&b, "z", NULL);
		json_buf_end(&b);
		CHECK(!b.oom);
		CHECK(strchr(b.data, '\n') == NULL); /* one line, whatever the input */
		for (const unsigned char *p = (const unsigned char *)b.data; *p; p++)
			CHECK(*p >= 0x20 && *p != 0x7f);
		CHECK(json_flat_parse(b.data, b.len, &o) == 0);
		f = json_object_get(&o, "s");
		CHECK(f && f->type == JSON_STRING && strcmp(f->str, strings[i]) == 0);
		f = json_object_get(&o, "n");
		CHECK(f && f->type == JSON_INT && f->num == -42);
		f = json_object_get(&o, "z");
		CHECK(f && f->type == JSON_NULL);
		json_object_clear(&o);
		json_buf_deinit(&b);
	}

	/* Integers are written by hand: the extremes and zero come back as they were. */
	{
		static const int64_t ints[] = {0, 7, -1, 1000000, INT64_MAX, INT64_MIN};
		JsonBuf b;
		JsonObject o;
		const JsonField *f;

		json_buf_begin(&b);
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
			char key[8];

			snprintf(key, sizeof(key), "n%zu", i);
			json_buf_int(&b, key, ints[i]);
		}
		json_buf_end(&b);
		CHECK(!b.oom);
		CHECK(strstr(b.data, "\"n5\":-9223372036854775808}") != NULL);
		CHECK(json_flat_parse(b.data, b.len, &o) == 0);
		for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
			char key[8];

			snprintf(key, sizeof(key), "n%zu", i);
			f = json_object_get(&o, key);
			CHECK(f && f->type == JSON_INT && f->num == ints[i]);
		}
		json_object_clear(&o);
		json_buf_deinit(&b);
	}

	/* Invalid UTF-8 becomes U+FFFD, so the line stays valid JSON. */
	{
		JsonBuf b;
		JsonObject o;
		const JsonField *f;

		json_buf_begin(&b);
		json_buf_string(&b, "s", "a\xff\xc3(b\xed\xa0\x80");
		json_buf_end(&b);
		CHECK(json_flat_parse(b.data, b.len, &o) == 0);
		f = json_object_get(&o, "s");
		CHECK(f && strcmp(f->str, "a\xef\xbf\xbd\xef\xbf\xbd(b\xef\xbf\xbd\xef\xbf\xbd"
					  "\xef\xbf\xbd") == 0);
		json_object_clear(&o);
		json_buf_deinit(&b);
	}
}

static void test_json_strict(void)
{
	static const char *const bad[] = {
		"", "{", "}", "[]", "{\"a\":1,}", "{\"a\":1}x", "{\"a\":{\"b\":1}}", "{\"a\":[1]}",
		"{\"a\":1.5}", "{\"a\":1e3}", "{\"a\":01}", "{\"a\":\"x}", "{\"a\" 1}",
		"{a:1}", "{\"a\":1,\"a\":2}", "{\"a\":\"\\q\"}", "{\"a\":\"\\ud800\"}",
		"{\"a\":\"\\udc00\"}", "{\"a\":\"\x01\"}", "{\"a\":tru}", "{\"a\":\"\xff\"}",
		"{\"\":1}", "{\"a\":99999999999999999999}", "{\"a\":-}",
	};
	JsonObject o;
	char big[4096];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int r = json_flat_parse(bad[i], strlen(bad[i]), &o);

		if (r == 0) {
			fprintf(stderr, "accepted: %s\n", bad[i]);
			json_object_clear(&o);
		}
		CHECK(r < 0);
	}
	CHECK(json_flat_parse("{ }", 3, &o) == 0 && o.n == 0);
	{
		static const char t[] =
			" {\"a\" : true , \"b\":false,\"c\":\"\\u00e9\\ud83d\\udd11\"}\n";

		CHECK(json_flat_parse(t, sizeof(t) - 1, &o) == 0);
	}
	CHECK(o.n == 3 && json_object_get(&o, "a")->num == 1 &&
	      json_object_get(&o, "b")->num == 0 &&
	      strcmp(json_object_get(&o, "c")->str, "\xc3\xa9\xf0\x9f\x94\x91") == 0);
	json_object_clear(&o);

	/* 33 members: over JSON_FIELDS_MAX. */
	n += (size_t)snprintf(big + n, sizeof(big) - n, "{");
	for (int i = 0; i < JSON_FIELDS_MAX + 1; i++)
		n += (size_t)snprintf(big + n, sizeof(big) - n, "%s\"k%d\":%d", i ? "," : "", i, i);
	n += (size_t)snprintf(big + n, sizeof(big) - n, "}");
	CHECK(json_flat_parse(big, n, &o) == -E2BIG);
	/* Not NUL-terminated: the parser stops at len. */
	CHECK(json_flat_parse("{\"a\":1}garbage", 7, &o) == 0);
	json_object_clear(&o);
}

static void test_audit_line(void)
{
	static const char good[] =
		"{\"time\":\"2024-05-01T12:00:00.250000Z\",\"decision\":\"denied\","
		"\"identity\":\"pkcs11:token=demo\",\"server\":\"a.example.com\",\"pid\":42,"
		"\"exe\":\"/usr/bin/python3\",\"reason\":\"PolicyDenied: no\",\"latency_us\":0}\n";
	static const char *const bad[] = {
		"{\"decision\":\"denied\",\"identity\":\"x\"}",
		"{\"time\":\"yesterday\",\"decision\":\"denied\",\"identity\":\"x\"}",
		"{\"time\":\"2024-05-01T12:00:00Z\",\"decision\":\"maybe\",\"identity\":\"x\"}",
		"{\"time\":\"2024-05-01T12:00:00Z\",\"decision\":\"allowed\"}",
		"{\"time\":\"2024-05-01T12:00:00Z\",\"decision\":\"allowed\",\"identity\":\"x\","
		"\"pid\":\"42\"}",
		"{\"time\":\"2024-05-01T12:00:00Z\",\"decision\":\"allowed\",\"identity\":1}",
		"{\"time\":\"2024-05-01T12:00:00Z\",\"decision\":\"allowed\",\"identity\":\"x\","
		"\"latency_us\":-1}",
		"not json at all",
	};
	AuditEntry e;

	CHECK(audit_parse_line(good, sizeof(good) - 1, &e) == 0);
	CHECK(strcmp(e.decision, "denied") == 0 && e.pid == 42 && e.latency_us == 0 &&
	      strcmp(e.server, "a.example.com") == 0 && e.scheme == NULL &&
	      e.time_usec == 1714564800250000LL);
	audit_entry_clear(&e);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(audit_parse_line(bad[i], strlen(bad[i]), &e) < 0);
}

static void test_time(void)
{
	int64_t t;

	CHECK(audit_time_parse("2024-05-01T12:00:00Z", 0, &t) == 0 && t == 1714564800000000LL);
	CHECK(audit_time_parse("2024-05-01T14:00:00+02:00", 0, &t) == 0 &&
	      t == 1714564800000000LL);
	CHECK(audit_time_parse("2024-05-01", 0, &t) == 0 && t == 1714521600000000LL);
	CHECK(audit_time_parse("2h", 10000000000LL, &t) == 0 && t == 10000000000LL - 7200000000LL);
	CHECK(audit_time_parse("2x", 0, &t) < 0);
	CHECK(audit_time_parse("2024-13-01", 0, &t) < 0);
	CHECK(audit_time_parse("2024-05-01T12:00:00", 0, &t) < 0); /* no zone */
	CHECK(audit_time_parse("", 0, &t) < 0);
}

static void test_framing(void)
{
	static const char ctx[] = "TLS 1.3, client CertificateVerify";
	const CaScheme *ed = ca_scheme_by_name("ed25519"), *pkcs1 = ca_scheme_by_name(
								   "rsa_pkcs1_sha256");
	uint8_t m[256], h12[64];
	static const uint8_t sha1_di[] = {0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b,
					  0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
					  0x14, 1,    2,    3,	  4,	5,    6,
					  7,	8,    9,    10,	  11,	12,   13,
					  14,	15,   16,   17,	  18,	19,   20};
	CaError err = {0};
	size_t n;

	memset(m, ' ', 64);
	memcpy(m + 64, ctx, sizeof(ctx));
	memset(m + 64 + sizeof(ctx), 0xab, 48);
	CHECK(ca_tls_framing_check(m, 64 + sizeof(ctx) + 32) == CA_TLS_FRAMING_TLS13);
	CHECK(ca_tls_framing_check(m, 64 + sizeof(ctx) + 48) == CA_TLS_FRAMING_TLS13);
	CHECK(ca_tls_framing_check(m, 64 + sizeof(ctx) + 31) == CA_TLS_FRAMING_NONE);
	CHECK(ca_scheme_check_input(ed, m, 64 + sizeof(ctx) + 32, &err) == 0);
	m[3] = 'x';
	CHECK(ca_tls_framing_check(m, 64 + sizeof(ctx) + 32) == CA_TLS_FRAMING_NONE);
	m[3] = ' ';
	memcpy(m + 64, "TLS 1.3, server CertificateVerify", sizeof(ctx));
	CHECK(ca_tls_framing_check(m, 64 + sizeof(ctx) + 32) == CA_TLS_FRAMING_NONE);
	CHECK(ca_scheme_check_input(ed, (const uint8_t *)"hello", 5, &err) == CA_E_INVALID_ARGS);

	/* TLS 1.2: ClientHello(5) ServerHello(2) Certificate(0 body) ... */
	n = 0;
	h12[n++] = 1, h12[n++] = 0, h12[n++] = 0, h12[n++] = 5;
	memset(h12 + n, 7, 5), n += 5;
	h12[n++] = 2, h12[n++] = 0, h12[n++] = 0, h12[n++] = 2, h12[n++] = 3, h12[n++] = 3;
	h12[n++] = 11, h12[n++] = 0, h12[n++] = 0, h12[n++] = 0;
	CHECK(ca_tls_framing_check(h12, n) == CA_TLS_FRAMING_TLS12);
	CHECK(ca_scheme_check_input(ed, h12, n, &err) == 0);
	CHECK(ca_tls_framing_check(h12, n - 1) == CA_TLS_FRAMING_NONE); /* cut short */
	CHECK(ca_tls_framing_check(h12, 9) == CA_TLS_FRAMING_NONE);	/* one message */
	h12[0] = 2;
	CHECK(ca_tls_framing_check(h12, n) == CA_TLS_FRAMING_NONE); /* not a ClientHello first */
	h12[0] = 1;
	h12[3] = 60; /* a length past the end */
	CHECK(ca_tls_framing_check(h12, n) == CA_TLS_FRAMING_NONE);

	/* SHA-1 DigestInfo: refused with a message that says so. */
	CHECK(ca_scheme_check_input(pkcs1, sha1_di, sizeof(sha1_di), &err) == CA_E_INVALID_ARGS);
	CHECK(strstr(err.message, "SHA-1") != NULL);
}

int main(void)
{
	test_json_roundtrip();
	test_json_strict();
	test_audit_line();
	test_time();
	test_framing();
	if (failures) {
		fprintf(stderr, "%d check(s) failed\n", failures);
		return 1;
	}
	printf("ok: json, audit line, time, TLS framing\n");
	return 0;
}
