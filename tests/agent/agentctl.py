#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A small D-Bus client for the agent tests (python3-dbus), so the shell tests can check
# structured answers. Talks to $DBUS_SESSION_BUS_ADDRESS. On a D-Bus error it prints
# "ERROR <error name>: <message>" on stdout and exits 3.
#
#   agentctl.py identities            JSON list of identities (certificates as hex DER)
#   agentctl.py tokens                JSON list of tokens
#   agentctl.py sign URI SCHEME DATAFILE OUTFILE [KEY=TYPE:VALUE...]   options: s/u/b/t
#   agentctl.py unlock TOKEN PIN | lock | reload | version
#   agentctl.py watch OUTFILE SECONDS  record IdentitiesChanged signals (one line each)
import json
import os
import sys

import dbus

NAME = 'org.certagent.Agent1'
PATH = '/org/certagent/Agent1'


def agent(bus):
    return dbus.Interface(bus.get_object(NAME, PATH), NAME)


def plain(v):
    if isinstance(v, dbus.Array) and v.signature == 'y':
        return bytes(v).hex()
    if isinstance(v, (dbus.Array, list)):
        return [plain(x) for x in v]
    if isinstance(v, dbus.Dictionary):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.UInt32, dbus.UInt64, dbus.Int32, dbus.Int64, dbus.Byte)):
        return int(v)
    if isinstance(v, dbus.String):
        return str(v)
    return v


def option(spec):
    key, rest = spec.split('=', 1)
    kind, value = rest.split(':', 1)
    conv = {'s': dbus.String, 'u': lambda x: dbus.UInt32(int(x)),
            't': lambda x: dbus.UInt64(int(x)), 'b': lambda x: dbus.Boolean(x == 'true')}
    return key, conv[kind](value)


def watch(bus, outfile, seconds):
    from dbus.mainloop.glib import DBusGMainLoop  # noqa: F401 (imported for its side effect)
    from gi.repository import GLib
    loop = GLib.MainLoop()
    with open(outfile, 'a') as f:
        def on_signal(*args):
            f.write('IdentitiesChanged\n')
            f.flush()
        bus.add_signal_receiver(on_signal, 'IdentitiesChanged', NAME, None, PATH)
        f.write('ready\n')
        f.flush()
        GLib.timeout_add(int(float(seconds) * 1000), loop.quit)
        loop.run()


def main(argv):
    address = os.environ['DBUS_SESSION_BUS_ADDRESS']
    if argv[0] == 'watch':
        from dbus.mainloop.glib import DBusGMainLoop
        DBusGMainLoop(set_as_default=True)
        bus = dbus.bus.BusConnection(address)
        watch(bus, argv[1], argv[2])
        return 0
    bus = dbus.bus.BusConnection(address)
    a = agent(bus)
    cmd = argv[0]
    try:
        if cmd == 'identities':
            print(json.dumps(plain(a.ListIdentities()), indent=1))
        elif cmd == 'tokens':
            print(json.dumps(plain(a.ListTokens()), indent=1))
        elif cmd == 'sign':
            uri, scheme, datafile, outfile = argv[1:5]
            data = open(datafile, 'rb').read()
            opts = dict(option(s) for s in argv[5:])
            sig = a.Sign(uri, scheme, dbus.ByteArray(data),
                         dbus.Dictionary(opts, signature='sv'), timeout=60)
            open(outfile, 'wb').write(bytes(sig))
        elif cmd == 'unlock':
            a.Unlock(argv[1], argv[2])
        elif cmd == 'lock':
            a.Lock()
        elif cmd == 'reload':
            a.Reload()
        elif cmd == 'version':
            props = dbus.Interface(bus.get_object(NAME, PATH), 'org.freedesktop.DBus.Properties')
            print(props.Get(NAME, 'Version'))
        else:
            print('unknown command ' + cmd, file=sys.stderr)
            return 2
    except dbus.exceptions.DBusException as e:
        print('ERROR %s: %s' % (e.get_dbus_name(), e.get_dbus_message()))
        return 3
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
