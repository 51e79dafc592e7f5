// Unleash Node SDK clients (unleash-client, streaming mode) against a running gapless flag service, for
// bench/flags_propagation.py --unleash-node N (which may spread the N clients over several of these
// processes, as the N services that would each run one SDK do not share one event loop).
//
// argv: url token flag count [first]   (first: the number of this process's first client, for instanceId)
// Writes JSON lines to stdout; reads JSON lines from stdin.
//   -> {"ready": n}                       once n clients have connected and see the flag on
//   <- {"expect": true|false, "timeout": s}
//   -> {"seen": [epochSeconds | null, ...], "trace": {...}}
//        seen: when each client first evaluated the flag to the expected value (on its "changed" event,
//        and a 1 ms poll of isEnabled as a check); trace: where this process's time went meanwhile
//        ("firstData": the first bytes of an update read from any socket after the expect message, "busyMs": the
//        event loop's busy time, "maxDelayMs": its longest delay, both until the last client flipped)
//   <- {"stop": true}
import { Unleash } from 'unleash-client';
import net from 'node:net';
import readline from 'node:readline';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';

const [url, token, flag, countText, firstText = '0'] = process.argv.slice(2);
const count = Number(countText);
const first = Number(firstText);
const context = { userId: 'bench-node' };
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const emit = (obj) => new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));

let waiting = null; // {expected, seen, pending, resolve} while a change is expected

// The first bytes of an update any socket reads after an expect message: when the change reached
// this process (a heartbeat does not count).
let firstData = null;
const socketEmit = net.Socket.prototype.emit;
net.Socket.prototype.emit = function (name, chunk, ...rest) {
  if (name === 'data' && firstData === null && waiting !== null && chunk.includes('unleash-updated')) {
    firstData = now();
  }
  return socketEmit.call(this, name, chunk, ...rest);
};

const clients = [];
for (let i = 0; i < count; i++) {
  const client = new Unleash({
    url: `${url}/api`,
    appName: 'bench-node',
    instanceId: `bench-node-${first + i}`,
    customHeaders: { Authorization: token },
    refreshInterval: 60_000, // changes come by the stream; a poll every minute at most
    disableMetrics: true,
    experimentalMode: { type: 'streaming' },
    skipInstanceCountWarning: true,
  });
  client.on('error', () => {}); // a reconnecting stream reports errors; the measurement shows their effect
  client.on('warn', () => {});
  clients.push(client);
}
const deadline = Date.now() + 60_000;
while (Date.now() < deadline && !clients.every((c) => c.isEnabled(flag, context))) {
  await new Promise((r) => setTimeout(r, 10));
}
await emit({ ready: clients.filter((c) => c.isEnabled(flag, context)).length });

function check(i) {
  if (waiting && waiting.seen[i] === null && clients[i].isEnabled(flag, context) === waiting.expected) {
    waiting.seen[i] = now();
    waiting.pending -= 1;
    if (waiting.pending === 0) waiting.resolve();
  }
}
clients.forEach((c, i) => c.on('changed', () => check(i)));

const delay = monitorEventLoopDelay({ resolution: 1 });
const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const message = JSON.parse(line);
  if (message.stop) break;
  const seen = new Array(count).fill(null);
  firstData = null;
  delay.reset();
  delay.enable();
  const elu = performance.eventLoopUtilization();
  await new Promise((resolve) => {
    let poll = null;
    let timer = null;
    const finish = () => {
      clearInterval(poll);
      clearTimeout(timer);
      resolve();
    };
    waiting = { expected: message.expect, seen, pending: count, resolve: finish };
    poll = setInterval(() => clients.forEach((_, i) => check(i)), 1);
    timer = setTimeout(finish, message.timeout * 1000);
    clients.forEach((_, i) => check(i)); // already applied before the message arrived
  });
  const busy = performance.eventLoopUtilization(elu);
  delay.disable();
  waiting = null;
  const trace = { firstData, busyMs: busy.active, maxDelayMs: delay.max / 1e6 };
  await emit({ seen, trace });
}
clients.forEach((c) => c.destroy());
process.exit(0);
