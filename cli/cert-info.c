/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * cert-info: one certificate as the CLI shows it (see cert-info.h).
 */
#include <stdlib.h>

#include "cert-info.h"
#include "cli.h"
#include "json-print.h"
#include "p11cli.h"

void cert_info_init(CertInfo *c, gnutls_x509_crt_t crt)
{
	unsigned char serial[64];
	size_t size = sizeof(serial);

	*c = (CertInfo){.not_before = (time_t)-1, .not_after = (time_t)-1};
	if (!crt)
		return;
	c->subject = cli_crt_dn(crt, false);
	c->issuer = cli_crt_dn(crt, true);
	c->not_before = gnutls_x509_crt_get_activation_time(crt);
	c->not_after = gnutls_x509_crt_get_expiration_time(crt);
	if (gnutls_x509_crt_get_serial(crt, serial, &size) == 0) {
		c->serial = malloc(size * 2 + 1);
		if (c->serial)
			p11cli_hex(serial, size, c->serial);
	}
}

void cert_info_deinit(CertInfo *c)
{
	free(c->subject);
	free(c->issuer);
	free(c->serial);
	*c = (CertInfo){.not_before = (time_t)-1, .not_after = (time_t)-1};
}

void cert_info_print_json(const CertInfo *c, FILE *f)
{
	fputs("\"subject\": ", f);
	json_print_string(f, c->subject);
	fputs(", \"issuer\": ", f);
	json_print_string(f, c->issuer);
	fputs(", \"serial\": ", f);
	json_print_string(f, c->serial);
	fputs(", \"not_before\": ", f);
	json_print_time(f, c->not_before);
	fputs(", \"not_after\": ", f);
	json_print_time(f, c->not_after);
}

const char *cert_info_time_str(time_t t, char *buf, size_t size)
{
	struct tm tm;

	if (t == (time_t)-1 || !gmtime_r(&t, &tm) ||
	    !strftime(buf, size, "%Y-%m-%d %H:%M:%S UTC", &tm))
		snprintf(buf, size, "?");
	return buf;
}
