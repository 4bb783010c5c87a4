#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# Speaks the signing channel's frames (dbus/ipc-channel.h) by hand, for channel-test.sh: what
# libcertagent never sends must close the channel without hurting the agent. Talks to
# $DBUS_SESSION_BUS_ADDRESS; prints "ok" and exits 0 when every check held.
#
#   channel-client.py frames URI          good and bad frames on fresh channels, then the bus
#   channel-client.py exec URI PROGRAM    opens a channel, then execs PROGRAM (a copy of this
#                                         interpreter) running "send FD URI" on the inherited fd
#   channel-client.py send FD URI         one Sign on the channel fd FD
#   channel-client.py burst URI           300 Signs written on one channel without waiting for
#                                         replies: all answered, in order; after the 10th reply
#                                         a Sign with server name other.example on a second
#                                         channel, answered too
#   channel-client.py quick URI N PIDS    N Signs back to back on one channel, then a second
#                                         with it open and idle: prints the CPU ticks the
#                                         processes PIDS (comma-separated) used in that second
import os
import struct
import sys
import time

VERSION, SIGN, SIGNATURE, ERROR = 2, 1, 2, 3
SCHEME = 'ecdsa_secp256r1_sha256'
HASH = bytes(range(32))


def header(op, serial, version=VERSION):
    return struct.pack('<BBHI', version, op, 0, serial)


def field(b):
    return struct.pack('<I', len(b)) + b


def string(s):
    return field(s.encode() + b'\0') if s is not None else field(b'')


def sign_frame(uri, serial, scheme=SCHEME, data=HASH, version=VERSION, op=SIGN,
               server_name=None):
    return (header(op, serial, version) + string(uri) + string(scheme) + field(data) +
            string(server_name) + struct.pack('<I', 0))


def fail(msg):
    print('FAIL: ' + msg)
    sys.exit(1)


def open_channel():
    import dbus
    bus = dbus.SessionBus()
    agent = dbus.Interface(bus.get_object('org.certagent.Agent1', '/org/certagent/Agent1'),
                           'org.certagent.Agent1')
    return bus, agent, agent.OpenChannel().take()


def call(fd, frame):
    os.write(fd, frame)
    return os.read(fd, 200000)


def expect_signature(reply, serial, what):
    if len(reply) < 12:
        fail('%s: no reply frame (%r)' % (what, reply))
    version, op, _, got = struct.unpack('<BBHI', reply[:8])
    if (version, op, got) != (VERSION, SIGNATURE, serial):
        fail('%s: not the signature of request %d: %r' % (what, serial, reply[:64]))
    (n,) = struct.unpack('<I', reply[8:12])
    if n < 64 or len(reply) != 12 + n:
        fail('%s: a signature of %d bytes in a frame of %d' % (what, n, len(reply)))


def expect_closed(fd, frame, what):
    try:
        reply = call(fd, frame)
    except OSError:
        reply = b''
    if reply != b'':
        fail('%s: the agent answered %r instead of closing the channel' % (what, reply[:64]))
    os.close(fd)


def frames(uri):
    bus, agent, fd = open_channel()
    expect_signature(call(fd, sign_frame(uri, 1)), 1, 'a good Sign')
    expect_signature(call(fd, sign_frame(uri, 2)), 2, 'a second Sign on the same channel')
    # An error is an error frame, and the channel goes on.
    reply = call(fd, sign_frame(uri, 3, scheme='rsa_pkcs1_md5'))
    if reply[:2] != bytes([VERSION, ERROR]) or b'UnsupportedScheme' not in reply:
        fail('an unknown scheme: %r' % reply[:80])
    expect_signature(call(fd, sign_frame(uri, 4)), 4, 'a Sign after an error')
    # A length past the end of the frame.
    good = sign_frame(uri, 5)
    bad = good[:8] + struct.pack('<I', len(good)) + good[12:]
    expect_closed(fd, bad, 'a bad length')
    _, _, fd = open_channel()
    expect_closed(fd, header(9, 1) + string(uri), 'an unknown op')
    _, _, fd = open_channel()
    expect_closed(fd, sign_frame(uri, 1, version=1), 'a frame of version 1')
    _, _, fd = open_channel()
    expect_closed(fd, sign_frame(uri, 1) + b'\0', 'bytes after the last field')
    _, _, fd = open_channel()
    expect_closed(fd, sign_frame(uri, 0), 'serial 0')
    # The agent keeps serving: a fresh channel, and the bus.
    _, _, fd = open_channel()
    expect_signature(call(fd, sign_frame(uri, 1)), 1, 'a Sign on a new channel')
    sig = agent.Sign(uri, SCHEME, HASH, {}, byte_arrays=True)
    if len(sig) < 64:
        fail('Sign over the bus after the bad frames')
    print('ok')


def exec_other(uri, program):
    bus, agent, fd = open_channel()
    os.set_inheritable(fd, True)
    # The bus connection stays open too (nobody reads it): the name that opened the channel
    # stays on the bus, so the agent keeps the channel.
    os.set_inheritable(bus.get_unix_fd(), True)
    os.execv(program, [program, os.path.abspath(__file__), 'send', str(fd), uri])


def send(fd, uri):
    expect_signature(call(int(fd), sign_frame(uri, 1)), 1, 'a Sign on an inherited channel')
    print('ok')


def burst(uri, count=300):
    import threading
    _, _, fd = open_channel()
    _, _, other = open_channel()
    errors = []

    def writer():
        try:
            for serial in range(1, count + 1):
                os.write(fd, sign_frame(uri, serial))
        except OSError as e:
            errors.append('writing the burst: %s' % e)

    t = threading.Thread(target=writer)
    t.start()
    for serial in range(1, count + 1):
        expect_signature(os.read(fd, 200000), serial, 'reply %d of the burst' % serial)
        if serial == 10:
            # Marked with its server name: where it lands in the audit log says how long it
            # waited behind the burst (channel-test.sh).
            os.write(other, sign_frame(uri, 7, server_name='other.example'))
    t.join()
    if errors:
        fail('; '.join(errors))
    expect_signature(os.read(other, 200000), 7, 'a Sign on another channel')
    print('ok')


def cpu_ticks(pids):
    # utime + stime of each process, in clock ticks (/proc/PID/stat fields 14 and 15)
    total = 0
    for pid in pids:
        with open('/proc/%s/stat' % pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total


def quick(uri, count, pids):
    """Signs count times back to back on one channel, then keeps it open and idle for a
    second: prints the CPU ticks the given processes used in that second."""
    _, _, fd = open_channel()
    for serial in range(1, int(count) + 1):
        expect_signature(call(fd, sign_frame(uri, serial)), serial, 'signature %d' % serial)
    pids = pids.split(',')
    before = cpu_ticks(pids)
    time.sleep(1)
    print(cpu_ticks(pids) - before)
    os.close(fd)


if __name__ == '__main__':
    {'frames': frames, 'exec': exec_other, 'send': send, 'burst': burst,
     'quick': quick}[sys.argv[1]](*sys.argv[2:])
