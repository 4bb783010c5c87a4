/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ipc-dispatch: table-driven method dispatch for one object. Path, interface, member, the
 * input signature and the caller's policy are all checked here, before any handler runs, so a
 * handler only ever sees arguments of the types it declared. Also serves
 * org.freedesktop.DBus.Introspectable (the embedded XML) and org.freedesktop.DBus.Properties;
 * org.freedesktop.DBus.Peer is answered by libdbus itself.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "ipc.h"

#define INTROSPECTABLE "org.freedesktop.DBus.Introspectable"
#define PROPERTIES "org.freedesktop.DBus.Properties"

static int introspect(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err);
static int properties_get(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err);
static int properties_get_all(void *userdata, DBusMessage *msg, DBusMessage **ret_reply,
			      CaError *err);
static int properties_set(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err);

static const IpcMethod introspectable_methods[] = {
	{"Introspect", "", "s", introspect, IPC_POLICY_ANYONE},
};

static const IpcMethod properties_methods[] = {
	/* Property rows carry their own policy, checked in the handlers. */
	{"Get", "ss", "v", properties_get, IPC_POLICY_ANYONE},
	{"GetAll", "s", "a{sv}", properties_get_all, IPC_POLICY_ANYONE},
	{"Set", "ssv", "", properties_set, IPC_POLICY_ANYONE},
};

static const IpcInterface builtin_interfaces[] = {
	{INTROSPECTABLE, introspectable_methods, ELEMENTSOF(introspectable_methods), NULL, 0},
	{PROPERTIES, properties_methods, ELEMENTSOF(properties_methods), NULL, 0},
};

bool ipc_send(DBusConnection *conn, DBusMessage *reply)
{
	bool ok;

	if (!reply)
		return false;
	ok = dbus_connection_send(conn, reply, NULL);
	dbus_message_unref(reply);
	return ok;
}

static DBusHandlerResult reply_error(DBusConnection *conn, DBusMessage *msg, const char *name,
				     const char *fmt, ...) _printf_(4, 5);

static DBusHandlerResult reply_error(DBusConnection *conn, DBusMessage *msg, const char *name,
				     const char *fmt, ...)
{
	_cleanup_free_ char *copy = NULL;
	char text[CA_ERROR_MESSAGE_MAX];
	va_list ap;

	if (dbus_message_get_no_reply(msg))
		return DBUS_HANDLER_RESULT_HANDLED;
	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	if (!ipc_send(conn, dbus_message_new_error(msg, name, ipc_utf8_safe(text, &copy))))
		return DBUS_HANDLER_RESULT_NEED_MEMORY;
	return DBUS_HANDLER_RESULT_HANDLED;
}

/* Whether path is a proper ancestor of target ("/" and "/org" for "/org/certagent/Agent1"). */
static bool is_ancestor(const char *path, const char *target)
{
	size_t n = strlen(path);

	if (strcmp(path, "/") == 0)
		return strcmp(target, "/") != 0;
	return strncmp(path, target, n) == 0 && target[n] == '/';
}

static DBusHandlerResult introspect_ancestor(const IpcObject *obj, DBusConnection *conn,
					     DBusMessage *msg, const char *path)
{
	const char *rest = obj->path + (strcmp(path, "/") == 0 ? 1 : strlen(path) + 1);
	size_t n = strcspn(rest, "/");
	char xml[512];
	const char *p = xml;
	DBusMessage *reply;

	snprintf(
		xml, sizeof(xml),
		"<!DOCTYPE node PUBLIC \"-//freedesktop//DTD D-BUS Object Introspection 1.0//EN\"\n"
		" \"http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd\">\n"
		"<node>\n  <node name=\"%.*s\"/>\n</node>\n",
		(int)n, rest);
	reply = dbus_message_new_method_return(msg);
	if (!reply || !dbus_message_append_args(reply, DBUS_TYPE_STRING, &p, DBUS_TYPE_INVALID)) {
		if (reply)
			dbus_message_unref(reply);
		return DBUS_HANDLER_RESULT_NEED_MEMORY;
	}
	return ipc_send(conn, reply) ? DBUS_HANDLER_RESULT_HANDLED
				     : DBUS_HANDLER_RESULT_NEED_MEMORY;
}

static int introspect(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	const IpcObject *obj = userdata;
	DBusMessage *reply = dbus_message_new_method_return(msg);

	if (!reply || !dbus_message_append_args(reply, DBUS_TYPE_STRING, &obj->introspect_xml,
						DBUS_TYPE_INVALID)) {
		if (reply)
			dbus_message_unref(reply);
		return -ENOMEM;
	}
	*ret_reply = reply;
	return 0;
}

/* Finds a property of obj's interface; fills err with the D-Bus error to answer if not. */
static const IpcProperty *property_find(const IpcObject *obj, const char *iface, const char *name,
					const char **ret_error)
{
	const IpcInterface *in = obj->interface;

	if (strcmp(iface, in->name) != 0 && *iface) {
		*ret_error = DBUS_ERROR_UNKNOWN_INTERFACE;
		return NULL;
	}
	for (size_t i = 0; i < in->n_properties; i++)
		if (strcmp(in->properties[i].name, name) == 0)
			return &in->properties[i];
	*ret_error = DBUS_ERROR_UNKNOWN_PROPERTY;
	return NULL;
}

static int property_allowed(const IpcObject *obj, DBusMessage *msg, const IpcProperty *p,
			    CaError *err)
{
	if (!p->flags)
		return ca_error_set(err, CA_E_POLICY_DENIED, "property %s is not readable",
				    p->name);
	return obj->policy ? obj->policy(obj->userdata, msg, p->flags, err) : 0;
}

static bool property_append(const IpcObject *obj, const IpcProperty *p, DBusMessageIter *parent)
{
	DBusMessageIter variant;

	if (!dbus_message_iter_open_container(parent, DBUS_TYPE_VARIANT, p->sig, &variant))
		return false;
	if (!p->get(obj->userdata, &variant)) {
		dbus_message_iter_abandon_container(parent, &variant);
		return false;
	}
	return dbus_message_iter_close_container(parent, &variant);
}

static int properties_get(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	const IpcObject *obj = userdata;
	const char *iface, *name, *dbus_error = NULL;
	const IpcProperty *p;
	DBusMessageIter iter;
	DBusMessage *reply;
	int r;

	if (!dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &iface, DBUS_TYPE_STRING, &name,
				   DBUS_TYPE_INVALID))
		return ca_error_set(err, CA_E_INVALID_ARGS, "Get expects (ss)");
	p = property_find(obj, iface, name, &dbus_error);
	if (!p) {
		reply = dbus_message_new_error_printf(msg, dbus_error, "no property \"%s\" in %s",
						      name, *iface ? iface : obj->interface->name);
		if (!reply)
			return -ENOMEM;
		*ret_reply = reply;
		return 0;
	}
	r = property_allowed(obj, msg, p, err);
	if (r)
		return r;
	reply = dbus_message_new_method_return(msg);
	if (!reply)
		return -ENOMEM;
	dbus_message_iter_init_append(reply, &iter);
	if (!property_append(obj, p, &iter)) {
		dbus_message_unref(reply);
		return -ENOMEM;
	}
	*ret_reply = reply;
	return 0;
}

static int properties_get_all(void *userdata, DBusMessage *msg, DBusMessage **ret_reply,
			      CaError *err)
{
	const IpcObject *obj = userdata;
	const IpcInterface *in = obj->interface;
	const char *iface;
	DBusMessageIter iter, dict;
	DBusMessage *reply;
	bool ok;

	if (!dbus_message_get_args(msg, NULL, DBUS_TYPE_STRING, &iface, DBUS_TYPE_INVALID))
		return ca_error_set(err, CA_E_INVALID_ARGS, "GetAll expects (s)");
	reply = dbus_message_new_method_return(msg);
	if (!reply)
		return -ENOMEM;
	dbus_message_iter_init_append(reply, &iter);
	ok = ipc_dict_open(&iter, &dict);
	/* Other interfaces (ours without properties, the standard ones) answer an empty dict. */
	for (size_t i = 0; ok && (!*iface || strcmp(iface, in->name) == 0) && i < in->n_properties;
	     i++) {
		const IpcProperty *p = &in->properties[i];
		DBusMessageIter entry;

		if (property_allowed(obj, msg, p, NULL))
			continue;
		ok = dbus_message_iter_open_container(&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry);
		if (!ok)
			break;
		ok = dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &p->name) &&
		     property_append(obj, p, &entry);
		if (!ok) {
			dbus_message_iter_abandon_container(&dict, &entry);
			break;
		}
		ok = dbus_message_iter_close_container(&dict, &entry);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(&iter, &dict);
		dbus_message_unref(reply);
		return -ENOMEM;
	}
	if (!ipc_dict_close(&iter, &dict)) {
		dbus_message_unref(reply);
		return -ENOMEM;
	}
	*ret_reply = reply;
	return 0;
}

static int properties_set(void *userdata, DBusMessage *msg, DBusMessage **ret_reply, CaError *err)
{
	const IpcObject *obj = userdata;
	const char *iface, *name, *dbus_error = NULL;
	const IpcProperty *p;
	DBusMessageIter iter;

	dbus_message_iter_init(msg, &iter);
	dbus_message_iter_get_basic(&iter, &iface);
	dbus_message_iter_next(&iter);
	dbus_message_iter_get_basic(&iter, &name);
	p = property_find(obj, iface, name, &dbus_error);
	*ret_reply = p ? dbus_message_new_error_printf(msg, DBUS_ERROR_PROPERTY_READ_ONLY,
						       "property %s is read-only", p->name)
		       : dbus_message_new_error_printf(msg, dbus_error, "no property \"%s\"", name);
	return *ret_reply ? 0 : -ENOMEM;
}

static const IpcMethod *interface_find_method(const IpcInterface *in, const char *member)
{
	for (size_t i = 0; i < in->n_methods; i++)
		if (strcmp(in->methods[i].member, member) == 0)
			return &in->methods[i];
	return NULL;
}

DBusHandlerResult ipc_object_dispatch(const IpcObject *obj, DBusConnection *conn, DBusMessage *msg)
{
	const char *path, *iface, *member;
	const IpcMethod *row = NULL;
	bool builtin = false, iface_known = false;
	DBusMessage *reply = NULL;
	CaError err = {0};
	int r;

	if (dbus_message_get_type(msg) != DBUS_MESSAGE_TYPE_METHOD_CALL)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	path = dbus_message_get_path(msg);
	iface = dbus_message_get_interface(msg);
	member = dbus_message_get_member(msg);
	if (!path || !member)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;
	/* libdbus answers org.freedesktop.DBus.Peer on every path. */
	if (iface && strcmp(iface, DBUS_INTERFACE_PEER) == 0)
		return DBUS_HANDLER_RESULT_NOT_YET_HANDLED;

	if (strcmp(path, obj->path) != 0) {
		if (is_ancestor(path, obj->path) && strcmp(member, "Introspect") == 0 &&
		    (!iface || strcmp(iface, INTROSPECTABLE) == 0) &&
		    dbus_message_has_signature(msg, ""))
			return introspect_ancestor(obj, conn, msg, path);
		return reply_error(conn, msg, DBUS_ERROR_UNKNOWN_OBJECT,
				   "no object at %s; the agent serves %s", path, obj->path);
	}

	for (size_t i = 0; !row && i < ELEMENTSOF(builtin_interfaces); i++) {
		if (iface && strcmp(iface, builtin_interfaces[i].name) != 0)
			continue;
		iface_known = true;
		row = interface_find_method(&builtin_interfaces[i], member);
		builtin = row != NULL;
	}
	if (!row && (!iface || strcmp(iface, obj->interface->name) == 0)) {
		iface_known = true;
		row = interface_find_method(obj->interface, member);
	}
	if (!iface_known)
		return reply_error(conn, msg, DBUS_ERROR_UNKNOWN_INTERFACE,
				   "%s has no interface %s", path, iface);
	if (!row)
		return reply_error(conn, msg, DBUS_ERROR_UNKNOWN_METHOD, "%s has no method %s.%s",
				   path, iface ? iface : obj->interface->name, member);
	if (!dbus_message_has_signature(msg, row->in_sig))
		return reply_error(conn, msg, DBUS_ERROR_INVALID_ARGS,
				   "%s expects arguments of signature \"%s\", not \"%s\"", member,
				   row->in_sig, dbus_message_get_signature(msg));

	/* Default deny: a row without a policy flag is never callable. */
	if (!row->flags)
		r = ca_error_set(&err, CA_E_POLICY_DENIED, "%s is not callable", member);
	else if (obj->policy)
		r = obj->policy(obj->userdata, msg, row->flags, &err);
	else
		r = 0;
	if (r == 0)
		r = row->fn(builtin ? (void *)obj : obj->userdata, msg, &reply, &err);
	if (r != 0) {
		if (reply)
			dbus_message_unref(reply);
		reply = ipc_error_reply(msg, r, err.message);
		if (!reply)
			return DBUS_HANDLER_RESULT_NEED_MEMORY;
	}
	if (!reply)
		return DBUS_HANDLER_RESULT_HANDLED; /* the handler replies later */
	if (dbus_message_get_no_reply(msg)) {
		dbus_message_unref(reply);
		return DBUS_HANDLER_RESULT_HANDLED;
	}
	return ipc_send(conn, reply) ? DBUS_HANDLER_RESULT_HANDLED
				     : DBUS_HANDLER_RESULT_NEED_MEMORY;
}
