#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Records the org.certagent.Agent1 signals on $DBUS_SESSION_BUS_ADDRESS, one line each:
# "TokenRemoved <token-uri> <label>", "TokenAdded ...", "IdentitiesChanged". Writes "ready" once
# the match is in place, so the test never misses the first signal. Runs until killed.
#
#   watch-signals.py OUTFILE
import os
import sys

import dbus
from dbus.mainloop.glib import DBusGMainLoop
from gi.repository import GLib

IFACE = 'org.certagent.Agent1'


def main(outfile):
    DBusGMainLoop(set_as_default=True)
    bus = dbus.bus.BusConnection(os.environ['DBUS_SESSION_BUS_ADDRESS'])
    with open(outfile, 'a') as f:
        def on_signal(*args, member=None):
            f.write(' '.join([member] + [str(a) for a in args]) + '\n')
            f.flush()
        bus.add_signal_receiver(on_signal, None, IFACE, None, '/org/certagent/Agent1',
                                member_keyword='member')
        # A round trip: the AddMatch is in place once this returns.
        bus.get_unique_name()
        dbus.Interface(bus.get_object('org.freedesktop.DBus', '/org/freedesktop/DBus'),
                       'org.freedesktop.DBus').GetId()
        f.write('ready\n')
        f.flush()
        GLib.MainLoop().run()


if __name__ == '__main__':
    main(sys.argv[1])
