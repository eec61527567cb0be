#!/usr/bin/python3
# A lossy, slow wire between two interfaces of one namespace, for kernels built without
# sch_netem (`tc qdisc add ... netem` says "qdisc kind is unknown"): every frame that arrives on
# one side leaves by the other DELAY ms later, unless dropped with probability LOSS (seeded, so a
# run can be replayed). On SIGTERM it prints {"forwarded": n, "dropped": n} and exits.
# Usage: wire.py IF_A IF_B LOSS DELAY_MS SEED
import heapq
import json
import random
import select
import signal
import socket
import struct
import sys
import time

a, b = sys.argv[1], sys.argv[2]
loss, delay = float(sys.argv[3]), float(sys.argv[4]) / 1000
rng = random.Random(int(sys.argv[5]))
SOL_PACKET, PACKET_AUXDATA, PACKET_OUTGOING, TP_STATUS_CSUMNOTREADY = 263, 8, 4, 8
ETH_P_ALL = 3


def open_if(name):
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    s.setsockopt(SOL_PACKET, PACKET_AUXDATA, 1)
    s.bind((name, 0))
    return s


def checksum(data):
    if len(data) % 2:
        data += b'\0'
    s = sum(struct.unpack('!%dH' % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def fill_checksum(frame):
    """veth leaves TCP/UDP checksums to the 'hardware': a frame sent on again needs them filled."""
    if len(frame) < 34 or frame[12:14] != b'\x08\x00':
        return frame
    ihl = (frame[14] & 15) * 4
    proto, addrs = frame[23], frame[26:34]
    total = struct.unpack('!H', frame[16:18])[0]
    at = {6: 16, 17: 6}.get(proto)
    l4 = bytearray(frame[14 + ihl : 14 + total])
    if at is None or len(l4) < at + 2:
        return frame
    l4[at : at + 2] = b'\0\0'
    c = checksum(addrs + struct.pack('!BBH', 0, proto, len(l4)) + bytes(l4))
    l4[at : at + 2] = struct.pack('!H', c or (0xFFFF if proto == 17 else 0))
    return frame[: 14 + ihl] + bytes(l4) + frame[14 + total :]


sa, sb = open_if(a), open_if(b)
other = {sa: sb, sb: sa}
queue, seq, counts = [], 0, {'forwarded': 0, 'dropped': 0}


def report(*_):
    print(json.dumps(counts), flush=True)
    sys.exit(0)


signal.signal(signal.SIGTERM, report)
print('ready', flush=True)
while True:
    wait = max(0.0, queue[0][0] - time.monotonic()) if queue else None
    ready, _, _ = select.select([sa, sb], [], [], wait)
    for s in ready:
        frame, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(64))
        if addr[2] == PACKET_OUTGOING:
            continue
        if anc and struct.unpack('I', anc[0][2][:4])[0] & TP_STATUS_CSUMNOTREADY:
            frame = fill_checksum(frame)
        if rng.random() < loss:
            counts['dropped'] += 1
            continue
        seq += 1
        heapq.heappush(queue, (time.monotonic() + delay, seq, other[s], frame))
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        _, _, out, frame = heapq.heappop(queue)
        out.send(frame)
        counts['forwarded'] += 1
