/**
 * Cross-site request defences of the admin router, in two independent layers:
 *
 * 1. Every state-changing request (anything but GET/HEAD/OPTIONS) is refused when the browser says
 *    it comes from another origin: `Sec-Fetch-Site` other than `same-origin`, or an `Origin` whose
 *    scheme and host are not this request's (nor listed in `allowedOrigins`). Non-browser clients
 *    (curl, scripts) send neither and pass.
 * 2. HTML forms also carry a synchronizer token: a random per-browser value in an HttpOnly,
 *    SameSite=Lax cookie, and in the form its HMAC under the router's secret. Another site can
 *    neither read the token nor, without the secret, mint one for a cookie it managed to plant.
 *
 * Why Lax and not Strict: operators reach the dashboard through links in chat, alerts and runbooks,
 * which are cross-site navigations. A Strict cookie is withheld on those, so the page would issue a
 * new cookie and every form already open in another tab would fail its token check. Lax still
 * withholds the cookie on cross-site POSTs, the only requests the token guards, and GET routes
 * change nothing; the token and layer 1 carry the protection, the SameSite attribute is a third line.
 *
 * The same secret signs the result ("flash") messages shown after an action, so a crafted link
 * cannot make the page claim that something was released.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import { AdminHttpError, quote } from './http-error';

export const CSRF_COOKIE = 'dbm_admin_csrf';
export const CSRF_FIELD = '_csrf';
const COOKIE_VALUE = /^[A-Za-z0-9_-]{43}$/;

export class Signer {
  private readonly key: Buffer;

  constructor(secret: string | Buffer | undefined) {
    if (secret === undefined) {
      this.key = randomBytes(32);
    } else if ((typeof secret === 'string' || Buffer.isBuffer(secret)) && Buffer.byteLength(secret) >= 32) {
      this.key = Buffer.from(secret);
    } else {
      throw new TypeError('secret must be a string or Buffer of at least 32 bytes');
    }
  }

  sign(purpose: string, data: string): string {
    // The purpose is part of the MAC so a CSRF token can never pass as a flash signature or vice versa.
    return createHmac('sha256', this.key).update(purpose).update('\0').update(data).digest('base64url');
  }

  verify(purpose: string, data: string, signature: string): boolean {
    const expected = Buffer.from(this.sign(purpose, data));
    const given = Buffer.from(signature);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** The CSRF cookie's value from a Cookie header, if present and well-formed. */
export function readCsrfCookie(headers: IncomingHttpHeaders): string | null {
  const header = headers.cookie;
  if (typeof header !== 'string') return null;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq < 0) continue;
    if (part.slice(0, eq).trim() === CSRF_COOKIE) {
      const value = part.slice(eq + 1).trim();
      if (COOKIE_VALUE.test(value)) return value;
    }
  }
  return null;
}

export function newCsrfCookieValue(): string {
  return randomBytes(32).toString('base64url');
}

export function csrfCookieHeader(value: string, path: string, secure: boolean): string {
  return `${CSRF_COOKIE}=${value}; Path=${path}; HttpOnly; SameSite=Lax${secure ? '; Secure' : ''}`;
}

export function csrfToken(signer: Signer, cookieValue: string): string {
  return signer.sign('csrf', cookieValue);
}

export function checkCsrfToken(signer: Signer, cookieValue: string | null, token: string | undefined): void {
  if (!cookieValue || !token || !signer.verify('csrf', cookieValue, token)) {
    throw new AdminHttpError(
      403,
      'CSRF_TOKEN_INVALID',
      'The form is missing a valid security token (it may have expired, cookies may be blocked, or several ' +
        'server processes use different secrets). Reload the page and try again.',
    );
  }
}

/**
 * The origins (`scheme://host[:port]`, as `URL.origin` writes them) a request to this router comes
 * from when it is same-origin: its scheme as Express sees it (`req.protocol`, which honours the app's
 * `trust proxy` setting) with each of its host names. Unparsable hosts are left out.
 */
export function requestOrigins(protocol: string, hosts: readonly (string | undefined)[]): string[] {
  const origins: string[] = [];
  for (const host of hosts) {
    if (typeof host !== 'string' || host === '') continue;
    const origin = originOf(`${protocol}://${host}`);
    if (origin !== null && !origins.includes(origin)) origins.push(origin);
  }
  return origins;
}

/** `URL.origin` of `text` (lower-case host, default port dropped), or null for anything without one. */
export function originOf(text: string): string | null {
  try {
    const origin = new URL(text).origin;
    return origin === 'null' ? null : origin;
  } catch {
    return null;
  }
}

/**
 * Layer 1: refuses state-changing requests that a browser marks as cross-site. `sameOrigins` are the
 * origins this request may come from (see requestOrigins, plus the router's `allowedOrigins`). The
 * scheme counts: a page on `http://host` (which anyone on the network path can write) must not act on
 * `https://host`.
 */
export function checkSameOrigin(headers: IncomingHttpHeaders, sameOrigins: readonly string[]): void {
  const site = headers['sec-fetch-site'];
  if (site !== undefined && site !== 'same-origin') {
    throw new AdminHttpError(403, 'CROSS_SITE_REQUEST', `Refused a cross-site request (Sec-Fetch-Site: ${String(site)}).`);
  }
  const origin = headers.origin;
  if (origin === undefined) return;
  const given = originOf(origin);
  if (given === null || !sameOrigins.includes(given)) {
    throw new AdminHttpError(
      403,
      'CROSS_SITE_REQUEST',
      `Refused a cross-site request: its Origin ${quote(origin, 100)} is not this site (${sameOrigins[0] ?? 'unknown'}). ` +
        'Behind a proxy that terminates TLS or rewrites Host, set Express\'s "trust proxy" or list the public origin in allowedOrigins.',
    );
  }
}
