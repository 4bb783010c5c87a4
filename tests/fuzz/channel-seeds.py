#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# channel-seeds.py DIR: writes the seed corpus of fuzz-channel (signing channel frames,
# dbus/ipc-channel.h) into DIR. The committed tests/fuzz/corpus/channel/ was made with it; run
# it again when the frame format changes. The first byte of each seed picks the side (0: the
# agent decoding a Sign or Prepare request, 1: the client decoding a reply to serial 7). Besides frames
# libcertagent and the agent really send, a few that must be refused: another version, an
# unknown op, a length past the end, a string without its NUL, bytes after the last field.
import os
import struct
import sys

VERSION, SIGN, SIGNATURE, ERROR, PREPARE = 2, 1, 2, 3, 4


def header(op, serial, version=VERSION):
    return struct.pack('<BBHI', version, op, 0, serial)


def field(b):
    return struct.pack('<I', len(b)) + b


def string(s):
    return field(s.encode() + b'\0') if s is not None else field(b'')


def sign(uri, scheme, data, server=None, certs=(), serial=1, version=VERSION):
    f = header(SIGN, serial, version) + string(uri) + string(scheme) + field(data)
    f += string(server) + struct.pack('<I', len(certs))
    for c in certs:
        f += field(c)
    return f


uri = 'pkcs11:token=demo;object=client;type=private'
hash32 = bytes(range(0xa0, 0xc0))
seeds = {
    'sign-ecdsa': b'\0' + sign(uri, 'ecdsa_secp256r1_sha256', hash32),
    'sign-server': b'\0' + sign(uri, 'ecdsa_secp256r1_sha256', hash32, 'www.example.com',
                                [b'\x30\x82\x01\x00' + bytes(60), b'\x30\x03\x02\x01\x01']),
    'sign-empty-data': b'\0' + sign(uri, 'rsa_pss_rsae_sha256', b''),
    'sign-v1': b'\0' + sign(uri, 'ecdsa_secp256r1_sha256', hash32, version=1),
    'sign-serial-0': b'\0' + sign(uri, 'ecdsa_secp256r1_sha256', hash32, serial=0),
    'sign-17-certs': b'\0' + sign(uri, 'ed25519', hash32, None, [b'\x30'] * 17),
    'sign-truncated': b'\0' + sign(uri, 'ecdsa_secp256r1_sha256', hash32)[:-9],
    'sign-trailing': b'\0' + sign(uri, 'ecdsa_secp256r1_sha256', hash32) + b'\0',
    'sign-no-nul': b'\0' + header(SIGN, 1) + field(b'pkcs11:') + string('x') + field(b'1')
                   + field(b'') + struct.pack('<I', 0),
    'sign-inner-nul': b'\0' + header(SIGN, 1) + field(b'pkcs11:\0x\0') + string('x')
                      + field(b'1') + field(b'') + struct.pack('<I', 0),
    'sign-huge-length': b'\0' + header(SIGN, 1) + struct.pack('<I', 0xffffffff) + b'pkcs11:',
    'prepare': b'\0' + header(PREPARE, 3) + string(uri),
    'prepare-trailing': b'\0' + header(PREPARE, 3) + string(uri) + string('x'),
    'prepare-no-uri': b'\0' + header(PREPARE, 3) + field(b''),
    'unknown-op': b'\0' + header(9, 1) + string(uri),
    'reply-as-request': b'\0' + header(SIGNATURE, 1) + field(bytes(64)),
    'reply-signature': b'\1' + header(SIGNATURE, 7) + field(b'\x30\x44' + bytes(68)),
    'reply-error': b'\1' + header(ERROR, 7) + string('org.certagent.Error.PolicyDenied')
                   + string('policy "web" does not allow this server'),
    'reply-other-serial': b'\1' + header(SIGNATURE, 8) + field(bytes(64)),
    'reply-empty-signature': b'\1' + header(SIGNATURE, 7) + field(b''),
    'reply-request': b'\1' + sign(uri, 'ecdsa_secp256r1_sha256', hash32, serial=7),
    'garbage': b'\0garbage that is no frame at all',
}
d = sys.argv[1] if len(sys.argv) > 1 else '.'
os.makedirs(d, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(d, name), 'wb') as f:
        f.write(data)
