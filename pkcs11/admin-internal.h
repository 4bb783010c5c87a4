/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * admin-internal: what the two halves of admin (admin.h) share. admin.c finds the slots, opens
 * the AdminSession and does logins, PINs and token initialisation; admin-object.c works on the
 * objects on its token. An AdminSession owns its read-write session and its stub Token. Only
 * those two files include this.
 */
#pragma once

#include <stdbool.h>

#include "admin.h"
#include "internal.h"

struct AdminSession {
	Store *s;
	Module *m;
	CK_SLOT_ID slot;
	CK_SESSION_HANDLE h;
	bool open;
	Token tok; /* stub: module, slot, info, label, uri, short_uri, login state */
};

/* Whether label is that of an object an unfinished enrolment left (ADMIN_TMP_PREFIX). */
bool admin_label_is_tmp(const char *label);
