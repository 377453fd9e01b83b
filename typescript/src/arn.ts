/**
 * Reports whether `id` is the ARN of a KMS key
 * (`arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`), as opposed to a bare key
 * ID, an alias name or an alias ARN, which KMS has to resolve before the key
 * ARN is known.
 */
export function isKeyArn(id: string): boolean {
  return /^arn:[^:]+:kms:[^:]*:[^:]*:key\/.+$/s.test(id);
}
