#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# memsearch.py PID KEY.pem CERT.der: searches the memory of process PID (/proc/PID/maps and
# /proc/PID/mem; needs root or ptrace rights) for the secret numbers of the RSA private key in
# KEY.pem (private exponent d, primes p and q, d mod p-1, d mod q-1, q^-1 mod p), big-endian as
# in the key and little-endian as bignum libraries keep them in words, whole and as a 16-byte
# window from their middle. None may be found. As a control it must find CERT.der (the leaf
# certificate the client received from the agent), which shows the search reads real memory.
# Exit 0: no secret found and the control found; 1 otherwise.
import re
import subprocess
import sys


def key_secrets(key_file):
    text = subprocess.run(['openssl', 'rsa', '-in', key_file, '-noout', '-text'],
                          check=True, capture_output=True, text=True).stdout
    der = subprocess.run(['openssl', 'rsa', '-in', key_file, '-outform', 'DER'],
                         check=True, capture_output=True).stdout
    names = ['privateExponent', 'prime1', 'prime2', 'exponent1', 'exponent2', 'coefficient']
    secrets = {}
    current = None
    for line in text.splitlines():
        m = re.match(r'^(\w+):\s*$', line)
        if m:
            current = m.group(1) if m.group(1) in names else None
            if current:
                secrets[current] = ''
            continue
        if current and line.startswith(' '):
            secrets[current] += line.strip().replace(':', '')
        else:
            current = None
    out = {}
    for name, hexs in secrets.items():
        value = bytes.fromhex(hexs).lstrip(b'\0')
        # Self-check: the value must be in the key's own DER, or the parse is wrong.
        if value not in der or len(value) < 64:
            sys.exit(f'memsearch: could not extract {name} from {key_file}')
        out[name] = value
    if set(out) != set(names):
        sys.exit(f'memsearch: {key_file} is not an RSA private key with all CRT values')
    return out


def regions(pid):
    with open(f'/proc/{pid}/maps') as f:
        for line in f:
            parts = line.split()
            start, end = (int(x, 16) for x in parts[0].split('-'))
            name = parts[5] if len(parts) > 5 else ''
            if 'r' not in parts[1] or name in ('[vvar]', '[vsyscall]'):
                continue
            yield start, end, name


def dump(pid):
    chunks = []
    with open(f'/proc/{pid}/mem', 'rb', 0) as mem:
        for start, end, name in regions(pid):
            try:
                mem.seek(start)
                chunks.append(mem.read(end - start))
            except (OSError, ValueError, OverflowError):
                pass
    # A separator that cannot join two regions into a false match.
    return b'\0\xff\0\xff'.join(chunks)


def main():
    pid, key_file, cert_file = sys.argv[1], sys.argv[2], sys.argv[3]
    secrets = key_secrets(key_file)
    with open(cert_file, 'rb') as f:
        cert = f.read()
    memory = dump(pid)
    print(f'memsearch: read {len(memory) // 1024} KiB of process {pid}')
    found = []
    for name, value in secrets.items():
        mid = len(value) // 2
        probes = {
            'big-endian': value,
            'little-endian': value[::-1],
            'big-endian 16-byte window': value[mid - 8:mid + 8],
            'little-endian 16-byte window': value[::-1][mid - 8:mid + 8],
        }
        for how, probe in probes.items():
            if probe in memory:
                found.append(f'{name} ({how}, {len(probe)} bytes)')
    control = cert in memory
    print(f'memsearch: control: leaf certificate ({len(cert)} bytes DER) '
          f'{"found" if control else "NOT found"}')
    for f in found:
        print(f'memsearch: FOUND private key material: {f}')
    if not control:
        print('memsearch: the control failed: the search does not see the client\'s memory')
    if found or not control:
        return 1
    print(f'memsearch: none of {len(secrets)} secret values found (4 probes each)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
