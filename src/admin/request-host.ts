/**
 * The host a request was addressed to, the same way on Express 4 and 5.
 */
import type { Request } from 'express';

type TrustFn = (address: string | undefined, hop: number) => boolean;

/**
 * What Express 5's `req.host` returns: the first `X-Forwarded-Host` when the app's `trust proxy`
 * setting trusts the peer, else the `Host` header, port included. Computed here rather than read from
 * `req.host` because on Express 4 that getter is deprecated (it prints a warning into the host app's
 * log) and drops the port, so a proxied origin such as `https://admin.example:8443` would never match.
 * `trust proxy fn` is the compiled form of `trust proxy` that both versions keep in the app settings.
 */
export function forwardedHost(req: Request): string | undefined {
  const trust = req.app?.get('trust proxy fn') as TrustFn | undefined;
  let host = req.get('X-Forwarded-Host');
  if (!host || typeof trust !== 'function' || !trust(req.socket?.remoteAddress, 0)) {
    host = req.get('Host');
  } else if (host.includes(',')) {
    host = host.slice(0, host.indexOf(',')).trimEnd();
  }
  return host || undefined;
}
