/**
 * The one error type the admin router answers with. Anything else that reaches the router's error
 * handler is unexpected and becomes a generic 500 without details (the stack never leaves the server).
 */
import { InputError, type InputErrorCode } from '../input-error';
import { printableJson } from '../printable';

export type AdminErrorCode =
  | 'FORBIDDEN'
  | 'CROSS_SITE_REQUEST'
  | 'CSRF_TOKEN_INVALID'
  | 'READ_ONLY'
  | 'NOT_FOUND'
  | 'LOCK_NOT_FOUND'
  | 'FENCING_TOKEN_MISMATCH'
  | InputErrorCode
  | 'INVALID_PARAMETER'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'PAYLOAD_TOO_LARGE'
  | 'METHOD_NOT_ALLOWED'
  | 'NOT_CONFIGURED'
  | 'INTERNAL';

export class AdminHttpError extends Error {
  override readonly name = 'AdminHttpError';
  constructor(
    readonly status: number,
    readonly code: AdminErrorCode,
    message: string,
    /** Extra fields for the JSON error body (e.g. `currentFencingToken`). */
    readonly details: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Shows junk input back to the user in a message, short and unambiguous (quotes, invisible characters escaped). */
export function quote(value: string, max = 40): string {
  const cut = [...value];
  return printableJson(cut.length > max ? `${cut.slice(0, max).join('')}…` : value);
}

/**
 * The 4xx answer to an error a request caused, or null for anything else (then a 500): the router's own
 * errors as they are, invalid input as a 400 that names the field, and the errors Express and body-parser
 * raise before our handlers run (malformed %-escapes in the path, bad JSON, oversized bodies), which carry
 * an HTTP status.
 */
export function asHttpError(error: unknown): AdminHttpError | null {
  if (error instanceof AdminHttpError) return error;
  // Refused input, from the router's own parsers or the DbMutex's validators (see input-error.ts).
  if (error instanceof InputError) return new AdminHttpError(400, error.code, error.message);
  if (typeof error !== 'object' || error === null) return null;
  const e = error as { status?: unknown; statusCode?: unknown; type?: unknown };
  const status = typeof e.status === 'number' ? e.status : typeof e.statusCode === 'number' ? e.statusCode : null;
  if (status === null || status < 400 || status > 499) return null;
  switch (e.type) {
    case 'entity.parse.failed':
      return new AdminHttpError(400, 'INVALID_BODY', 'The request body could not be parsed (malformed JSON or form data).');
    case 'entity.too.large':
    case 'parameters.too.many':
      return new AdminHttpError(413, 'PAYLOAD_TOO_LARGE', 'The request body is too large.');
    case 'charset.unsupported':
    case 'encoding.unsupported':
      return new AdminHttpError(415, 'UNSUPPORTED_MEDIA_TYPE', 'The request body uses an unsupported charset or encoding.');
    default:
      if (error instanceof URIError || status === 400) {
        return new AdminHttpError(400, 'INVALID_PARAMETER', 'The request URL or body is malformed (e.g. a broken %-escape).');
      }
      return new AdminHttpError(status, 'INVALID_PARAMETER', 'The request was rejected as malformed.');
  }
}
