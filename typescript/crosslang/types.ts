// The JSON shapes of the cross-language test contract.

export interface CrossLanguageInput {
  id: string;
  secret: string;
}

export interface ActivityResult extends CrossLanguageInput {
  activity_language: string;
}

export interface FinishSignal {
  note: string;
}

export interface CrossLanguageResult extends ActivityResult {
  note: string;
  workflow_language: string;
}

/** This program's language, as the contract names it. */
export const LANGUAGE = 'typescript';
