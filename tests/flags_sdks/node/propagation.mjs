// N Unleash Node SDK clients (unleash-client, streaming mode) against a running gapless flag service, for
// bench/flags_propagation.py --unleash-node N.
//
// argv: url token flag count. Writes JSON lines to stdout; reads JSON lines from stdin.
//   -> {"ready": n}                       once n clients have connected and see the flag on
//   <- {"expect": true|false, "timeout": s}
//   -> {"seen": [epochSeconds | null, ...]}  when each client first evaluated the flag to the expected
//                                             value (on its "changed" event, and a 1 ms poll as a check)
//   <- {"stop": true}
import { Unleash } from 'unleash-client';
import readline from 'node:readline';

const [url, token, flag, countText] = process.argv.slice(2);
const count = Number(countText);
const context = { userId: 'bench-node' };
const now = () => (performance.timeOrigin + performance.now()) / 1000;
const emit = (obj) => new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));

const clients = [];
for (let i = 0; i < count; i++) {
  const client = new Unleash({
    url: `${url}/api`,
    appName: 'bench-node',
    instanceId: `bench-node-${i}`,
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

let waiting = null; // {expected, seen, pending, resolve}
function check(i) {
  if (waiting && waiting.seen[i] === null && clients[i].isEnabled(flag, context) === waiting.expected) {
    waiting.seen[i] = now();
    waiting.pending -= 1;
    if (waiting.pending === 0) waiting.resolve();
  }
}
clients.forEach((c, i) => c.on('changed', () => check(i)));

const lines = readline.createInterface({ input: process.stdin });
for await (const line of lines) {
  const message = JSON.parse(line);
  if (message.stop) break;
  const seen = new Array(count).fill(null);
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
  waiting = null;
  await emit({ seen });
}
clients.forEach((c) => c.destroy());
process.exit(0);
