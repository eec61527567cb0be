// A raw DHCP client for the interop tests, run inside the client namespace:
//   ip netns exec NS node raw-client.mjs < job.json
// job: { packets: [hex], to, port?, rounds?, intervalMs?, waitMs? }. Binds 0.0.0.0:68, sends every
// packet, then resends the ones whose xid got no BOOTREPLY yet, like a real client retransmits,
// at most `rounds` times. Prints {replies: {xid: hex}, answeredFirstRound, rounds, strays}.
import { createSocket } from 'node:dgram';

const job = JSON.parse(
  await new Promise((resolve) => {
    let s = '';
    process.stdin.on('data', (d) => {
      s += d;
    });
    process.stdin.on('end', () => resolve(s));
  }),
);
const rounds = job.rounds ?? 1;
const intervalMs = job.intervalMs ?? 1000;
const packets = job.packets.map((hex) => Buffer.from(hex, 'hex'));
// Answers are matched by xid; a packet too short to have one (a malformed one) is never pending.
const xidOf = (b) => (b.length >= 8 ? b.readUInt32BE(4) : null);
const xids = new Set(packets.map(xidOf).filter((x) => x !== null));
const replies = {};
let strays = 0;
let answeredFirstRound = 0;

const sock = createSocket({ type: 'udp4', reuseAddr: true });
sock.on('message', (b) => {
  if (b.length < 240 || b[0] !== 2) return void strays++;
  const xid = b.readUInt32BE(4);
  if (!xids.has(xid) || replies[xid]) return void strays++;
  replies[xid] = b.toString('hex');
});
await new Promise((resolve) => sock.bind(68, '0.0.0.0', resolve));
sock.setBroadcast(true);

const pending = () => packets.filter((b) => xidOf(b) !== null && !replies[xidOf(b)]);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let round = 0;
for (; round < rounds; round++) {
  const todo = round === 0 ? packets : pending();
  if (todo.length === 0) break;
  for (const b of todo) sock.send(b, job.port ?? 67, job.to);
  // Wait out the interval, but stop early once every packet has its answer.
  for (let t = 0; t < intervalMs && pending().length > 0; t += 20) await sleep(20);
  if (round === 0) answeredFirstRound = Object.keys(replies).length;
}
if (job.waitMs) await sleep(job.waitMs);
sock.close();
process.stdout.write(`${JSON.stringify({ replies, answeredFirstRound, rounds: round, strays })}\n`);
