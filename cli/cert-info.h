/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cert-info: what the CLI shows of one certificate (subject, issuer, serial, validity), read
 * once from a parsed certificate and printed alike by `certagent list` (each identity's chain)
 * and `certagent connect --explain` (the server's chain). The caller owns a CertInfo and clears
 * it with cert_info_deinit().
 */
#pragma once

#include <stdio.h>
#include <time.h>

#include <gnutls/x509.h>

typedef struct CertInfo {
	char *subject, *issuer;	      /* RFC 4514 DNs; NULL when unreadable */
	char *serial;		      /* lower-case hex; NULL when unreadable */
	time_t not_before, not_after; /* (time_t)-1 when unknown */
} CertInfo;

/* Fills c from crt; with crt NULL (a certificate that did not parse), c says nothing is known. */
void cert_info_init(CertInfo *c, gnutls_x509_crt_t crt);
void cert_info_deinit(CertInfo *c);

/* The fields as JSON object members, "\"subject\": …, \"not_after\": …", without braces. */
void cert_info_print_json(const CertInfo *c, FILE *f);

/* t as "2025-01-31 12:00:00 UTC" in buf, or "?" when unknown; returns buf. */
const char *cert_info_time_str(time_t t, char *buf, size_t size);
