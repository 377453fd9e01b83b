// The cross-language activity; it runs outside the workflow sandbox.

import { LANGUAGE, type ActivityResult, type CrossLanguageInput } from './types';

// eslint-disable-next-line @typescript-eslint/require-await -- an activity is async by contract
export async function CrossLanguageActivity(input: CrossLanguageInput): Promise<ActivityResult> {
  return { id: input.id, secret: input.secret, activity_language: LANGUAGE };
}
