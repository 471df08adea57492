/**
 * A TCP port on 127.0.0.1 that was free a moment ago. The embedded-PostgreSQL script's own picker,
 * so the suite and its global setup choose ports one way.
 */
// eslint-disable-next-line @typescript-eslint/no-require-imports
const script = require('../../scripts/embedded-pg') as { freePort: () => Promise<number> };

export function freePort(): Promise<number> {
  return script.freePort();
}
