/**
 * KMS key ARNs taken apart, and the matching rule of multi-Region keys
 * (docs/FORMAT.md, "Multi-Region keys").
 *
 * @module
 */

// Starts the key ID of every multi-Region key, and of no single-Region key.
const MULTI_REGION_PREFIX = 'mrk-';

/** A KMS key ARN taken apart: `arn:partition:kms:region:account:key/keyId`. */
export interface KeyArn {
  readonly partition: string;
  readonly region: string;
  readonly account: string;
  readonly keyId: string;
}

/** Takes a key ARN apart; undefined for anything that is not a key ARN (see {@link isKeyArn}). */
export function parseKeyArn(id: string): KeyArn | undefined {
  if (!id.startsWith('arn:')) {
    return undefined;
  }
  const rest = id.slice('arn:'.length);
  // partition, service, region, account; the resource is everything after.
  const fields: string[] = [];
  let start = 0;
  for (let i = 0; i < 4; i++) {
    const end = rest.indexOf(':', start);
    if (end < 0) {
      return undefined;
    }
    fields.push(rest.slice(start, end));
    start = end + 1;
  }
  const [partition = '', service, region = '', account = ''] = fields;
  const resource = rest.slice(start);
  if (partition === '' || service !== 'kms' || !resource.startsWith('key/') || resource.length === 'key/'.length) {
    return undefined;
  }
  return { partition, region, account, keyId: resource.slice('key/'.length) };
}

/**
 * Reports whether `id` is the ARN of a KMS key
 * (`arn:PARTITION:kms:REGION:ACCOUNT:key/KEY-ID`), as opposed to a bare key
 * ID, an alias name or an alias ARN, which KMS has to resolve before the key
 * ARN is known.
 */
export function isKeyArn(id: string): boolean {
  return parseKeyArn(id) !== undefined;
}

/** The ARN of `arn` as a string. */
export function formatKeyArn(arn: KeyArn): string {
  return `arn:${arn.partition}:kms:${arn.region}:${arn.account}:key/${arn.keyId}`;
}

/**
 * Reports whether `arn` is a multi-Region key: one of a set of replicas in
 * several regions that share key material, so that what one replica wraps
 * any other unwraps.
 */
export function isMultiRegion(arn: KeyArn): boolean {
  return arn.keyId.startsWith(MULTI_REGION_PREFIX);
}

/** The ARN of `arn`'s replica in `region`: `arn` with only the region changed. Meaningful for a multi-Region key only. */
export function inRegion(arn: KeyArn, region: string): KeyArn {
  return { ...arn, region };
}

/**
 * Reports whether two key IDs name the same key material: they are equal,
 * or both are multi-Region key ARNs that differ at most by region
 * (replicas of one another). A single-Region key matches only itself: the
 * same key ID in two regions names two unrelated keys. Anything that is
 * not a key ARN matches only the identical string.
 */
export function sameKeyArn(a: string, b: string): boolean {
  if (a === b) {
    return true;
  }
  const x = parseKeyArn(a);
  const y = parseKeyArn(b);
  return (
    x !== undefined &&
    y !== undefined &&
    isMultiRegion(x) &&
    isMultiRegion(y) &&
    formatKeyArn(inRegion(x, '')) === formatKeyArn(inRegion(y, ''))
  );
}

/**
 * The region-free name of a multi-Region key, equal for all its replicas;
 * undefined for anything else.
 */
export function replicaSetOf(id: string): string | undefined {
  const arn = parseKeyArn(id);
  return arn !== undefined && isMultiRegion(arn) ? formatKeyArn(inRegion(arn, '')) : undefined;
}
