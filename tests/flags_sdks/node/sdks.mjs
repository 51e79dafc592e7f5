// Drives the official Node SDKs against a running gapless flag service for tests/flags_sdks/test_node_sdks.py.
//
// Reads one JSON job from stdin, writes JSON lines to stdout.
//   {"mode": "evaluate", "url", "token", "flags": [...], "contexts": [...], "ofrepEvery": N}
//     -> {"unleash": [[enabled, variant], ...] per context x flag, "ofrep": [[value, variant, reason] | null, ...]}
//   {"mode": "watch", "url", "token", "flag", "context"}
//     -> {"ready": true} once the flag is on in a streaming Unleash client, then {"off": ms} when it is off.
//   {"mode": "watch", "sdk": "ofrep", ...}: the same through the OFREP provider (one evaluation request each)
import { startUnleash } from 'unleash-client';
import { OpenFeature } from '@openfeature/server-sdk';
import { OFREPProvider } from '@openfeature/ofrep-provider';

const input = await new Promise((resolve) => {
  let text = '';
  process.stdin.on('data', (chunk) => (text += chunk));
  process.stdin.on('end', () => resolve(JSON.parse(text)));
});

// A pipe takes large writes in parts: wait for each, so exiting cannot cut an answer short.
const emit = (obj) => new Promise((resolve) => process.stdout.write(JSON.stringify(obj) + '\n', resolve));

function unleashConfig(job, extra) {
  return {
    url: `${job.url}/api`,
    appName: extra.appName,
    instanceId: extra.appName,
    customHeaders: { Authorization: job.token },
    refreshInterval: extra.refreshInterval,
    metricsInterval: 1000,
    disableMetrics: false,
    storageProvider: undefined,
    // polling reads /api/client/delta (the Python, Go and Java SDKs read /features)
    experimentalMode: extra.streaming ? { type: 'streaming' } : { type: 'polling', format: 'delta' },
  };
}

if (input.mode === 'evaluate') {
  const unleash = await startUnleash(unleashConfig(input, { appName: 'node-conformance', refreshInterval: 1000 }));
  await OpenFeature.setProviderAndWait(
    new OFREPProvider({ baseUrl: input.url, headers: [['Authorization', `Bearer ${input.token}`]] }),
  );
  const of = OpenFeature.getClient();
  const answers = { unleash: [], ofrep: [] };
  for (const [i, ctx] of input.contexts.entries()) {
    for (const flag of input.flags) {
      const variant = unleash.getVariant(flag, ctx);
      answers.unleash.push([unleash.isEnabled(flag, ctx), variant.enabled ? variant.name : 'disabled']);
      if (i % input.ofrepEvery === 0) {
        const { targetingKey, ...rest } = { ...(ctx.properties || {}), ...ctx, properties: undefined };
        delete rest.properties;
        const details = await of.getBooleanDetails(flag, false, { targetingKey, ...rest });
        answers.ofrep.push([details.value, details.variant ?? null, details.reason ?? null]);
      } else {
        answers.ofrep.push(null);
      }
    }
  }
  await emit(answers);
  unleash.destroy();
  await OpenFeature.close();
} else if (input.mode === 'watch' && input.sdk === 'ofrep') {
  await OpenFeature.setProviderAndWait(
    new OFREPProvider({ baseUrl: input.url, headers: [['Authorization', `Bearer ${input.token}`]] }),
  );
  const of = OpenFeature.getClient();
  const context = { targetingKey: input.context.userId, userId: input.context.userId };
  const on = async () => {
    const details = await of.getBooleanDetails(input.flag, false, context);
    // a wrong answer (bad token, unknown flag) ends the watch; the service being busy does not
    if (details.errorCode && details.errorCode !== 'GENERAL') throw new Error(JSON.stringify(details));
    return details.value;
  };
  while (!(await on())) await new Promise((r) => setTimeout(r, 10));
  await emit({ ready: true });
  const started = Date.now();
  while (await on()) await new Promise((r) => setTimeout(r, 5));
  await emit({ off: Date.now() - started });
  await OpenFeature.close();
} else if (input.mode === 'watch') {
  const unleash = await startUnleash(
    unleashConfig(input, { appName: 'node-streaming', refreshInterval: 60000, streaming: true }),
  );
  while (!unleash.isEnabled(input.flag, input.context)) await new Promise((r) => setTimeout(r, 10));
  await emit({ ready: true });
  const started = Date.now();
  while (unleash.isEnabled(input.flag, input.context)) await new Promise((r) => setTimeout(r, 5));
  await emit({ off: Date.now() - started });
  unleash.destroy();
}
process.exit(0);
