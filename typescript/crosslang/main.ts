// The cross-language test program: `main.js worker` runs a worker of
// CrossLanguageWorkflow and CrossLanguageActivity, `main.js starter` runs
// WORKFLOW_COUNT of them through a signal and a query; both use kmscodec
// with keys in the KMS at KMS_ENDPOINT. See the README for the contract.

import { KMSClient } from '@aws-sdk/client-kms';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, Worker } from '@temporalio/worker';

import { KMSCodec, kmsDataConverter } from '../src';
import * as activities from './activities';
import { LANGUAGE, type CrossLanguageInput, type CrossLanguageResult } from './types';

function env(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') {
    throw new Error(`${name} is not set`);
  }
  return value;
}

function codec(): KMSCodec {
  const kms = new KMSClient({ region: env('AWS_REGION'), endpoint: env('KMS_ENDPOINT') });
  return new KMSCodec({ kms, keyId: env('KMS_KEY_ID'), namespace: env('TEMPORAL_NAMESPACE') });
}

async function runWorker(): Promise<void> {
  // Logs go to stderr, so that stdout carries the "ready" line only.
  Runtime.install({
    logger: new DefaultLogger('WARN', (entry) => {
      process.stderr.write(`${entry.level} ${entry.message}\n`);
    }),
  });
  const connection = await NativeConnection.connect({ address: env('TEMPORAL_ADDRESS') });
  const worker = await Worker.create({
    connection,
    namespace: env('TEMPORAL_NAMESPACE'),
    taskQueue: env('TASK_QUEUE'),
    workflowsPath: require.resolve('./workflows'),
    activities,
    dataConverter: kmsDataConverter(codec()),
  });
  // The SDK shuts the worker down on SIGINT and SIGTERM; run resolves then.
  const running = worker.run();
  while (worker.getState() !== 'RUNNING') {
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  process.stdout.write('ready\n');
  await running;
  await connection.close();
}

async function runStarter(): Promise<void> {
  const count = Number(env('WORKFLOW_COUNT'));
  const prefix = env('WORKFLOW_ID_PREFIX');
  const connection = await Connection.connect({ address: env('TEMPORAL_ADDRESS') });
  const client = new Client({ connection, namespace: env('TEMPORAL_NAMESPACE'), dataConverter: kmsDataConverter(codec()) });
  try {
    const results = await Promise.all(
      Array.from({ length: count }, (_, i) => runOne(client, env('TASK_QUEUE'), `${prefix}-${String(i)}`)),
    );
    const languages = (pick: (r: CrossLanguageResult) => string) => [...new Set(results.map(pick))].sort();
    process.stdout.write(
      `${JSON.stringify({
        completed: results.length,
        workflow_languages: languages((r) => r.workflow_language),
        activity_languages: languages((r) => r.activity_language),
      })}\n`,
    );
  } finally {
    await connection.close();
  }
}

// runOne starts one workflow, waits for it to report "waiting", signals it
// and checks its result.
async function runOne(client: Client, taskQueue: string, id: string): Promise<CrossLanguageResult> {
  const input: CrossLanguageInput = { id, secret: `s3cret-${id}` };
  const handle = await client.workflow.start('CrossLanguageWorkflow', { taskQueue, workflowId: id, args: [input] });
  // A query fails while no worker has picked the workflow up yet (the
  // server gives up waiting), so failures are retried until the deadline.
  const deadline = Date.now() + 4 * 60_000;
  for (let last: unknown; ; ) {
    try {
      last = await handle.query<string>('progress');
      if (last === 'waiting') {
        break;
      }
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`${id}: query progress did not answer "waiting" (last: ${String(last)})`);
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  const note = `from-${LANGUAGE}`;
  await handle.signal('finish', { note });
  const result = (await handle.result()) as CrossLanguageResult;
  const want = { id, secret: input.secret, note };
  for (const [field, value] of Object.entries(want)) {
    if (result[field as keyof typeof want] !== value) {
      throw new Error(`${id}: result.${field} is ${JSON.stringify(result[field as keyof typeof want])}, want ${JSON.stringify(value)}`);
    }
  }
  return result;
}

async function main(): Promise<void> {
  const mode = process.argv[2];
  if (mode === 'worker') {
    await runWorker();
  } else if (mode === 'starter') {
    await runStarter();
  } else {
    throw new Error(`usage: main.js worker|starter (got ${String(mode)})`);
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
