#!/usr/bin/python3
# SPDX-License-Identifier: LGPL-2.1-or-later
# A scripted pinentry for the prompt tests. It speaks the real Assuan pinentry protocol on
# stdin/stdout (greeting, OPTION, SET*, GETINFO, CONFIRM, MESSAGE, GETPIN, BYE; percent-escaped
# data lines) so certagentd's libassuan client is tested as it talks to a real pinentry.
#
# Driven by the environment the agent passes on:
#   FAKE_PINENTRY_TRANSCRIPT  file every received command is appended to (one line each;
#                             GETPIN answers are noted as "-> pin"/"-> cancel", never the PIN)
#   FAKE_PINENTRY_ANSWERS     file of answers, one per GETPIN/CONFIRM, consumed from the top:
#                             "pin VALUE", "cancel"; for CONFIRM the button pressed: "ok",
#                             "notok", "cancel", or "close" (the window's close button),
#                             "timeout" (nobody answered). When it is empty: cancel.
#                             CONFIRM answers as pinentry.c's cmd_confirm does: OK, ERR
#                             GPG_ERR_NOT_CONFIRMED (NOTOK button), ERR GPG_ERR_CANCELED (Cancel;
#                             after "S BUTTON_INFO close" for the close button), ERR
#                             GPG_ERR_TIMEOUT.
#   FAKE_PINENTRY_DELAY       seconds to wait before answering GETPIN/CONFIRM (default 0)
#   FAKE_PINENTRY_REJECT      commands to answer as unknown (space-separated, e.g. "SETNOTOK"
#                             for a pinentry older than the third button)
import fcntl
import os
import sys
import time

CANCELLED = 'ERR 83886179 Operation cancelled <Pinentry>'
NOT_CONFIRMED = 'ERR 83886194 Not confirmed <Pinentry>'
TIMEOUT = 'ERR 83886142 Timeout <Pinentry>'


def note(line):
    path = os.environ.get('FAKE_PINENTRY_TRANSCRIPT')
    if not path:
        return
    with open(path, 'a') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        f.write(line + '\n')


def next_answer():
    path = os.environ.get('FAKE_PINENTRY_ANSWERS')
    if not path or not os.path.exists(path):
        return 'cancel'
    with open(path, 'r+') as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        lines = f.read().splitlines()
        f.seek(0)
        f.truncate()
        f.write(''.join(x + '\n' for x in lines[1:]))
    return lines[0] if lines else 'cancel'


def escape(data):
    out = []
    for ch in data:
        if ch in '%\r\n' or ord(ch) < 0x20:
            out.append('%%%02X' % ord(ch))
        else:
            out.append(ch)
    return ''.join(out)


def send(line):
    sys.stdout.write(line + '\n')
    sys.stdout.flush()


def main():
    delay = float(os.environ.get('FAKE_PINENTRY_DELAY', '0') or 0)
    reject = os.environ.get('FAKE_PINENTRY_REJECT', '').upper().split()
    note('# started pid %d' % os.getpid())
    send('OK Pleased to meet you, process %d' % os.getpid())
    for raw in sys.stdin:
        line = raw.rstrip('\r\n')
        cmd = line.split(' ', 1)[0].upper()
        note(line)
        if cmd in reject:
            note('-> unknown command')
            send('ERR 536871187 Unknown IPC command <User defined source 1>')
            continue
        if cmd == 'BYE':
            send('OK closing connection')
            return 0
        if cmd == 'GETINFO':
            what = line.split(' ', 1)[1] if ' ' in line else ''
            if what == 'pid':
                send('D %d' % os.getpid())
            elif what == 'version':
                send('D 1.2.1')
            elif what == 'flavor':
                send('D fake')
            send('OK')
        elif cmd == 'GETPIN':
            time.sleep(delay)
            answer = next_answer()
            if answer.startswith('pin '):
                note('-> pin')
                send('D ' + escape(answer[4:]))
                send('OK')
            else:
                note('-> cancel')
                send(CANCELLED)
        elif cmd == 'CONFIRM':
            time.sleep(delay)
            answer = next_answer()
            if answer not in ('ok', 'notok', 'close', 'timeout'):
                answer = 'cancel'
            note('-> ' + answer)
            if answer == 'ok' or line.endswith('--one-button'):
                send('OK' if answer == 'ok' else CANCELLED)
            elif answer == 'notok':
                send(NOT_CONFIRMED)
            elif answer == 'close':
                send('S BUTTON_INFO close')
                send(CANCELLED)
            elif answer == 'timeout':
                send(TIMEOUT)
            else:
                send(CANCELLED)
        elif cmd in ('OPTION', 'SETDESC', 'SETPROMPT', 'SETTITLE', 'SETERROR', 'SETKEYINFO',
                     'SETTIMEOUT', 'SETOK', 'SETCANCEL', 'SETNOTOK', 'SETQUALITYBAR',
                     'SETREPEAT', 'SETREPEATERROR', 'MESSAGE', 'RESET', 'NOP'):
            send('OK')
        else:
            send('ERR 536871187 Unknown IPC command <User defined source 1>')
    return 0


if __name__ == '__main__':
    sys.exit(main())
