#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# bus-fuzz.py: a D-Bus fuzzer against the running certagentd (Debian 12 has no dfuzzer).
# Sends COUNT random method calls to org.certagent.Agent1 on $DBUS_SESSION_BUS_ADDRESS:
# random or real paths, interfaces and members; random signatures (nested arrays, structs,
# dicts, variants, fds) with random values; well-typed calls of the real methods with hostile
# values (junk URIs and schemes, data of every length around the caps, option dictionaries
# with wrong types, duplicate keys, huge strings); bursts sent without waiting for the answer
# (to fill the pending caps) and calls flagged no-reply. Deterministic for a given --seed.
#
# Fails (exit 1) when the agent dies, stops answering (a call times out), or replies to a
# method call with anything but an error from the expected set or a method return; at the
# end it must still answer ListIdentities. Prints a histogram of the answers.
#
#   bus-fuzz.py --pid AGENT-PID [--count N] [--seed S] [--uri IDENTITY-URI] [--token LABEL]
import argparse
import collections
import os
import random
import sys

import dbus
import dbus.lowlevel

NAME = 'org.certagent.Agent1'
PATH = '/org/certagent/Agent1'
IFACE = 'org.certagent.Agent1'
MEMBERS = ['ListIdentities', 'ListTokens', 'Sign', 'Unlock', 'Lock', 'Reload']
STD = {
    'org.freedesktop.DBus.Introspectable': ['Introspect'],
    'org.freedesktop.DBus.Properties': ['Get', 'GetAll', 'Set'],
    'org.freedesktop.DBus.Peer': ['Ping', 'GetMachineId'],
}
SCHEMES = ['rsa_pkcs1_sha256', 'rsa_pkcs1_sha384', 'rsa_pkcs1_sha512', 'rsa_pss_rsae_sha256',
           'rsa_pss_rsae_sha384', 'rsa_pss_rsae_sha512', 'ecdsa_secp256r1_sha256',
           'ecdsa_secp384r1_sha384', 'ecdsa_secp521r1_sha512', 'ed25519']
# Answers a hostile caller may get. Anything else (NoReply: the agent hung; ServiceUnknown /
# NoOwner / Disconnected: it died) fails the run.
EXPECTED_ERRORS = {
    'org.freedesktop.DBus.Error.InvalidArgs', 'org.freedesktop.DBus.Error.UnknownMethod',
    'org.freedesktop.DBus.Error.UnknownInterface', 'org.freedesktop.DBus.Error.UnknownObject',
    'org.freedesktop.DBus.Error.UnknownProperty', 'org.freedesktop.DBus.Error.PropertyReadOnly',
    'org.freedesktop.DBus.Error.AccessDenied', 'org.freedesktop.DBus.Error.LimitsExceeded',
    'org.certagent.Error.KeyNotFound', 'org.certagent.Error.PinRequired',
    'org.certagent.Error.PinIncorrect', 'org.certagent.Error.TokenAbsent',
    'org.certagent.Error.UnsupportedScheme', 'org.certagent.Error.InvalidArgs',
    'org.certagent.Error.TooLarge', 'org.certagent.Error.PolicyDenied',
    'org.certagent.Error.Cancelled', 'org.certagent.Error.Failed',
}
BASIC = 'ybnqiuxtdsog'


class Fuzzer:
    def __init__(self, rng, uri, token):
        self.r = rng
        self.uri = uri
        self.token = token

    # ---- names --------------------------------------------------------------------------
    def ident(self):
        first = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_'
        return self.r.choice(first) + ''.join(
            self.r.choice(first + '0123456789') for _ in range(self.r.randint(0, 40)))

    def path(self):
        c = self.r.random()
        if c < 0.7:
            return PATH
        if c < 0.8:
            return self.r.choice(['/', '/org', '/org/certagent', PATH + '/x'])
        return '/' + '/'.join(self.ident() for _ in range(self.r.randint(1, 5)))

    def interface(self):
        c = self.r.random()
        if c < 0.6:
            return IFACE
        if c < 0.75:
            return self.r.choice(list(STD))
        if c < 0.85:
            return None
        return '.'.join(self.ident() for _ in range(self.r.randint(2, 4)))

    def member(self, iface):
        c = self.r.random()
        if iface in STD and c < 0.8:
            return self.r.choice(STD[iface])
        if c < 0.85:
            return self.r.choice(MEMBERS)
        return self.ident()

    # ---- types and values ---------------------------------------------------------------
    def sig(self, depth=0):
        c = self.r.random()
        if depth > 3 or c < 0.5:
            return self.r.choice(BASIC + ('h' if self.r.random() < 0.05 else ''))
        if c < 0.65:
            return 'a' + self.sig(depth + 1)
        if c < 0.8:
            return '(' + ''.join(self.sig(depth + 1) for _ in range(self.r.randint(1, 4))) + ')'
        if c < 0.9:
            return 'a{' + self.r.choice(BASIC) + self.sig(depth + 1) + '}'
        return 'v'

    def text(self, maxlen=64):
        c = self.r.random()
        if c < 0.1:
            return ''
        if c < 0.15:
            return 'x' * self.r.choice([255, 256, 4096, 4097, 65537])
        if c < 0.3:
            return ''.join(chr(self.r.randint(0x80, 0x2fff)) for _ in range(self.r.randint(1, 20)))
        return ''.join(chr(self.r.randint(1, 126)) for _ in range(self.r.randint(1, maxlen)))

    def value(self, s, depth=0):
        r = self.r
        t = s[0]
        if t == 'y':
            return dbus.Byte(r.randint(0, 255))
        if t == 'b':
            return dbus.Boolean(r.random() < 0.5)
        if t == 'n':
            return dbus.Int16(r.randint(-2**15, 2**15 - 1))
        if t == 'q':
            return dbus.UInt16(r.randint(0, 2**16 - 1))
        if t == 'i':
            return dbus.Int32(r.randint(-2**31, 2**31 - 1))
        if t == 'u':
            return dbus.UInt32(r.choice([0, 1, 0xffffffff, r.randint(0, 2**32 - 1)]))
        if t == 'x':
            return dbus.Int64(r.randint(-2**63, 2**63 - 1))
        if t == 't':
            return dbus.UInt64(r.randint(0, 2**64 - 1))
        if t == 'd':
            return dbus.Double(r.choice([0.0, -1.5, 1e308, float('inf'), float('nan')]))
        if t == 's':
            return dbus.String(self.text())
        if t == 'o':
            return dbus.ObjectPath(self.path())
        if t == 'g':
            return dbus.Signature(self.sig(2))
        if t == 'h':
            return dbus.types.UnixFd(os.open('/dev/null', os.O_RDONLY | os.O_CLOEXEC))
        if t == 'v':
            inner = self.sig(depth + 1)
            v = self.value(inner, depth + 1)
            return self.variant(v, inner)
        if t == 'a':
            inner = sub_sig(s[1:])
            n = r.choice([0, 1, 2, 5]) if depth < 2 else r.randint(0, 1)
            if inner[0] == '{':
                k = inner[1]
                vsig = inner[2:-1]
                return dbus.Dictionary({self.value(k, depth + 1): self.value(vsig, depth + 1)
                                        for _ in range(n)}, signature=inner[1:-1])
            if inner == 'y':
                return dbus.ByteArray(self.blob())
            return dbus.Array([self.value(inner, depth + 1) for _ in range(n)], signature=inner)
        if t == '(':
            return dbus.Struct([self.value(x, depth + 1) for x in split_sig(s[1:-1])])
        raise ValueError(s)

    def variant(self, v, s):
        # A typed variant: dbus-python infers the variant's signature from the Python type.
        if isinstance(v, dbus.Array):
            return dbus.Array(list(v), signature=v.signature, variant_level=1)
        if isinstance(v, dbus.Dictionary):
            return dbus.Dictionary(dict(v), signature=v.signature, variant_level=1)
        if isinstance(v, dbus.ByteArray):
            return dbus.Array(list(v), signature='y', variant_level=1)
        if isinstance(v, dbus.Struct):
            return dbus.Struct(v, variant_level=1)
        if isinstance(v, dbus.types.UnixFd):
            return dbus.String('fd', variant_level=1)
        return type(v)(v, variant_level=1)

    def blob(self):
        r = self.r
        n = r.choice([0, 1, 19, 31, 32, 33, 47, 48, 49, 51, 63, 64, 65, 67, 83, 130, 200,
                      r.randint(0, 400), 65536, 65537, 100000])
        return bytes(r.getrandbits(8) for _ in range(min(n, 512))) + b'\x30' * max(0, n - 512)

    # ---- calls ----------------------------------------------------------------------------
    def options(self):
        r = self.r
        d = {}
        for _ in range(r.choice([0, 0, 1, 2, 3, 33])):
            key = r.choice(['server-name', 'server-name', 'x', self.text(20) or 'k'])
            s = r.choice(['s', 's', 'u', 'b', 'as', 'aay', 'v', 'a{sv}', self.sig(1)])
            d[dbus.String(key)] = self.variant(self.value(s), s)
        return dbus.Dictionary(d, signature='sv')

    def hostile_sign(self):
        r = self.r
        uri = r.choice([self.uri, self.uri, 'pkcs11:', 'pkcs11:token=nosuch;object=x',
                        'file:///etc/passwd', self.text(), 'pkcs11:' + 'a' * 5000])
        scheme = r.choice(SCHEMES + ['', 'rsa_pkcs1_sha1', 'RSA', self.text(80)])
        return 'ssaya{sv}', [dbus.String(uri), dbus.String(scheme),
                             dbus.ByteArray(self.blob()), self.options()]

    def hostile_unlock(self):
        r = self.r
        tok = r.choice(['pkcs11:token=' + self.token, 'pkcs11:token=nosuch', 'pkcs11:',
                        self.text(), 'pkcs11:token=' + 'b' * 5000])
        pin = r.choice(['', 'wrong-pin', 'x' * 257, 'x' * 100000, self.text()])
        return 'ss', [dbus.String(tok), dbus.String(pin)]

    def message(self):
        r = self.r
        iface = self.interface()
        member = self.member(iface)
        path = self.path()
        c = r.random()
        if member == 'Sign' and c < 0.7:
            sig, args = self.hostile_sign()
        elif member == 'Unlock' and c < 0.5 and r.random() < 0.2:
            sig, args = self.hostile_unlock()
        elif member in ('Reload', 'Lock') and c < 0.9:
            sig, args = '', []  # cheap to refuse, costly to run: keep them rare
            if r.random() < 0.9:
                member = 'ListTokens'
        elif member in ('Get', 'GetAll', 'Set') and c < 0.6:
            sig = {'Get': 'ss', 'GetAll': 's', 'Set': 'ssv'}[member]
            args = [dbus.String(r.choice([IFACE, '', self.text(30)])),
                    dbus.String(r.choice(['Version', self.text(20)]))][:len(sig) if sig != 'ssv' else 2]
            if sig == 'ssv':
                args.append(dbus.String('1.0', variant_level=1))
            if sig == 's':
                args = args[:1]
        elif member == 'Unlock' and c < 0.8:
            sig, args = 'ss', [dbus.String('pkcs11:token=nosuch'), dbus.String('1')]
        else:
            sig = ''.join(self.sig() for _ in range(r.choice([0, 1, 2, 3, 4])))
            args = [self.value(x) for x in split_sig(sig)]
        msg = dbus.lowlevel.MethodCallMessage(NAME, path, iface, member)
        if args:
            msg.append(*args, signature=sig)
        return msg


def sub_sig(s):
    """The first complete type of s."""
    depth = 0
    for i, ch in enumerate(s):
        if ch in '({':
            depth += 1
        elif ch in ')}':
            depth -= 1
        if depth == 0 and ch != 'a':
            return s[:i + 1]
    raise ValueError(s)


def split_sig(s):
    out = []
    while s:
        t = sub_sig(s)
        out.append(t)
        s = s[len(t):]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--pid', type=int, required=True)
    ap.add_argument('--count', type=int, default=int(os.environ.get('BUS_FUZZ_COUNT', '2000')))
    ap.add_argument('--seed', type=int, default=int(os.environ.get('BUS_FUZZ_SEED', '1')))
    ap.add_argument('--uri', default='pkcs11:token=demo;object=client;type=private')
    ap.add_argument('--token', default='demo')
    a = ap.parse_args()

    bus = dbus.bus.BusConnection(os.environ['DBUS_SESSION_BUS_ADDRESS'])
    fz = Fuzzer(random.Random(a.seed), a.uri, a.token)
    seen = collections.Counter()
    bad = []

    def alive(where):
        try:
            os.kill(a.pid, 0)
        except OSError:
            sys.exit(f'bus-fuzz: FAIL: certagentd (pid {a.pid}) died {where}')

    sent = 0
    while sent < a.count:
        c = fz.r.random()
        try:
            if c < 0.01:
                # A burst without waiting: fills the pending caps, then the next call syncs.
                for _ in range(fz.r.randint(10, 40)):
                    bus.send_message(fz.message())
                    sent += 1
                seen['(burst)'] += 1
                continue
            msg = fz.message()
            if c < 0.06:
                msg.set_no_reply(True)
                bus.send_message(msg)
                seen['(no-reply)'] += 1
                sent += 1
                continue
        except (TypeError, ValueError, OverflowError, dbus.exceptions.DBusException) as e:
            seen['(not sendable: %s)' % type(e).__name__] += 1
            sent += 1
            continue
        sent += 1
        try:
            bus.send_message_with_reply_and_block(msg, 30.0)
            seen['(method return)'] += 1
        except dbus.exceptions.DBusException as e:
            name = e.get_dbus_name() or '?'
            seen[name] += 1
            if name not in EXPECTED_ERRORS:
                bad.append(f'{msg.get_interface()}.{msg.get_member()} '
                           f'({msg.get_signature()}) on {msg.get_path()}: {name}: {e}')
                if len(bad) >= 5:
                    break
        if sent % 200 == 0:
            alive(f'after {sent} calls')

    alive('at the end')
    try:
        reply = dbus.Interface(bus.get_object(NAME, PATH), IFACE).ListIdentities(timeout=30)
        uris = [str(i['uri']) for i in reply]
    except dbus.exceptions.DBusException as e:
        sys.exit(f'bus-fuzz: FAIL: ListIdentities after fuzzing: {e}')
    print(f'bus-fuzz: {sent} calls (seed {a.seed}); answers:')
    for k, v in sorted(seen.items(), key=lambda kv: -kv[1]):
        print(f'  {v:6d}  {k}')
    print(f'bus-fuzz: the agent is alive and lists {len(uris)} identities')
    if bad:
        print('bus-fuzz: FAIL: unexpected answers:')
        for b in bad:
            print('  ' + b[:400])
        return 1
    if a.uri not in uris:
        print(f'bus-fuzz: FAIL: {a.uri} is no longer listed: {uris}')
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
