#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# memsearch.py PID KEY.pem CERT.der: searches the memory of process PID (/proc/PID/maps and
# /proc/PID/mem; needs root or ptrace rights) for the secret numbers of the RSA private key in
# KEY.pem (private exponent d, primes p and q, d mod p-1, d mod q-1, q^-1 mod p), big-endian as
# in the key and little-endian as bignum libraries keep them in words, whole and as a 16-byte
# window from their middle. None may be found. As a control it must find CERT.der (the leaf
# certificate the client received from the agent), which shows the search reads real memory.
# Mappings over 1 GiB (ASan's shadow and reserved heap) are skipped; the rest is read in chunks.
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


# Regions larger than this are sanitizer shadow or reserved address space, not data.
REGION_MAX = 1 << 30
CHUNK = 1 << 20


def search(pid, probes):
    """The names of the probes found in the memory of pid; bytes read; regions skipped."""
    found, total, skipped = set(), 0, 0
    overlap = max(len(p) for p in probes.values()) - 1
    with open(f'/proc/{pid}/mem', 'rb', 0) as mem:
        for start, end, name in regions(pid):
            if end - start > REGION_MAX:
                skipped += 1
                continue
            tail = b''
            pos = start
            while pos < end:
                try:
                    mem.seek(pos)
                    chunk = mem.read(min(CHUNK, end - pos))
                except (OSError, ValueError, OverflowError):
                    break
                if not chunk:
                    break
                total += len(chunk)
                window = tail + chunk
                for key, probe in probes.items():
                    if key not in found and probe in window:
                        found.add(key)
                tail = window[-overlap:] if overlap else b''
                pos += len(chunk)
    return found, total, skipped


def main():
    pid, key_file, cert_file = sys.argv[1], sys.argv[2], sys.argv[3]
    secrets = key_secrets(key_file)
    with open(cert_file, 'rb') as f:
        cert = f.read()
    probes = {'control': cert}
    for name, value in secrets.items():
        mid = len(value) // 2
        probes[(name, 'big-endian', len(value))] = value
        probes[(name, 'little-endian', len(value))] = value[::-1]
        probes[(name, 'big-endian 16-byte window', 16)] = value[mid - 8:mid + 8]
        probes[(name, 'little-endian 16-byte window', 16)] = value[::-1][mid - 8:mid + 8]
    hits, total, skipped = search(pid, probes)
    print(f'memsearch: read {total // 1024} KiB of process {pid}'
          + (f' ({skipped} regions over 1 GiB skipped: sanitizer shadow)' if skipped else ''))
    found = [f'{k[0]} ({k[1]}, {k[2]} bytes)' for k in hits if k != 'control']
    control = 'control' in hits
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
