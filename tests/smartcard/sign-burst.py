#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Signs over and over through the agent from one process (python3-dbus), so a test can pull
# the card while signatures are in flight. One line per Sign on OUTFILE, flushed at once:
# "OK" or "ERROR <error name>: <message>". Stops after COUNT Signs, STOP-AFTER seconds after
# the first error (so the Signs span the time pcscd and the agent take to notice a pulled
# card), or when STOPFILE exists. Talks to $DBUS_SESSION_BUS_ADDRESS.
#
#   sign-burst.py URI SCHEME DATAFILE OUTFILE COUNT STOP-AFTER STOPFILE
import os
import sys
import time

import dbus


def main(uri, scheme, datafile, outfile, count, stop_after, stopfile):
    bus = dbus.bus.BusConnection(os.environ['DBUS_SESSION_BUS_ADDRESS'])
    agent = dbus.Interface(bus.get_object('org.certagent.Agent1', '/org/certagent/Agent1'),
                           'org.certagent.Agent1')
    data = dbus.ByteArray(open(datafile, 'rb').read())
    first_error = None
    with open(outfile, 'a') as f:
        for _ in range(int(count)):
            if os.path.exists(stopfile):
                break
            if first_error is not None and time.monotonic() - first_error >= float(stop_after):
                break
            try:
                agent.Sign(uri, scheme, data, dbus.Dictionary({}, signature='sv'), timeout=60)
                f.write('OK\n')
            except dbus.exceptions.DBusException as e:
                f.write('ERROR %s: %s\n' % (e.get_dbus_name(), e.get_dbus_message()))
                if first_error is None:
                    first_error = time.monotonic()
                time.sleep(0.05)
            f.flush()
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:8]))
