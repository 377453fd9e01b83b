/**
 * The failure converter to use with the codec: it moves each failure's
 * message and stack trace into an encoded payload, so that the codec
 * encrypts them too.
 *
 * Temporal's TypeScript SDK runs the failure converter inside the workflow
 * sandbox and so takes it as a module path, `failureConverterPath`, whose
 * `failureConverter` export it loads; this is that module. It imports
 * nothing but `@temporalio/common`, so that it bundles into workflow code.
 *
 * @module
 */

import { DefaultFailureConverter } from '@temporalio/common';

/** A DefaultFailureConverter with `encodeCommonAttributes` on. */
export const failureConverter = new DefaultFailureConverter({ encodeCommonAttributes: true });
