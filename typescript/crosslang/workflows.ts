// The cross-language workflow, bundled by the worker into Temporal's
// workflow sandbox: it may import only @temporalio/workflow and types.

import { condition, defineQuery, defineSignal, proxyActivities, setHandler } from '@temporalio/workflow';

import type * as activities from './activities';
import type { CrossLanguageInput, CrossLanguageResult, FinishSignal } from './types';

const { CrossLanguageActivity } = proxyActivities<typeof activities>({ startToCloseTimeout: '30 seconds' });

export const finish = defineSignal<[FinishSignal]>('finish');
export const progress = defineQuery<string>('progress');

/**
 * Runs CrossLanguageActivity with its input, waits for the finish signal,
 * and returns what both reported.
 */
export async function CrossLanguageWorkflow(input: CrossLanguageInput): Promise<CrossLanguageResult> {
  let note: string | undefined;
  setHandler(finish, (signal) => {
    note = signal.note;
  });
  setHandler(progress, () => (note === undefined ? 'waiting' : 'done'));
  const activity = await CrossLanguageActivity(input);
  await condition(() => note !== undefined);
  return {
    id: activity.id,
    secret: activity.secret,
    note: note ?? '',
    activity_language: activity.activity_language,
    workflow_language: 'typescript',
  };
}
