import type { DataConverter } from '@temporalio/common';

import type { KMSCodec } from './codec';

/**
 * The data converter for a Client and a Worker: `codec` encrypts every
 * payload, and failures are converted with `encodeCommonAttributes` on, so
 * that their messages and stack traces are encrypted too.
 */
export function kmsDataConverter(codec: KMSCodec): DataConverter {
  return {
    payloadCodecs: [codec],
    failureConverterPath: require.resolve('./failure-converter'),
  };
}
