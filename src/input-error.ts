/**
 * One mapping from "the input is wrong" to a stable error code that names the field at fault, shared by
 * the admin router (a 400 answer, HTML or JSON) and the CLI (exit status 2, and a JSON error with `--json`).
 *
 * The library's validators throw `TypeError`/`RangeError` naming the parameter, because inside a program a
 * bad argument is the programmer's mistake. At the edges the same values come from a person or a script, so
 * the caller that knows which field it passed turns the error into an `InputError` here, instead of each
 * edge guessing a code of its own.
 *
 * The scheme: `INVALID_` + the field's name in upper snake case (`fencingToken` → `INVALID_FENCING_TOKEN`).
 * The page cursor (`after`) is `INVALID_CURSOR`, and a request body that is not a JSON object `INVALID_BODY`.
 */

/** Every field a user gives the router or the CLI, and its code. */
export const INPUT_ERROR_CODES = {
  lockId: 'INVALID_LOCK_ID',
  fencingToken: 'INVALID_FENCING_TOKEN',
  filter: 'INVALID_FILTER',
  reason: 'INVALID_REASON',
  operator: 'INVALID_OPERATOR',
  limit: 'INVALID_LIMIT',
  cursor: 'INVALID_CURSOR',
  stale: 'INVALID_STALE',
  refresh: 'INVALID_REFRESH',
  floor: 'INVALID_FLOOR',
  tableName: 'INVALID_TABLE_NAME',
  eventsTableName: 'INVALID_EVENTS_TABLE_NAME',
  historyTableName: 'INVALID_HISTORY_TABLE_NAME',
  olderThanDays: 'INVALID_OLDER_THAN_DAYS',
  body: 'INVALID_BODY',
} as const;

export type InputField = keyof typeof INPUT_ERROR_CODES;
export type InputErrorCode = (typeof INPUT_ERROR_CODES)[InputField];

/** Input refused before anything was written; `message` says what was wrong and names the parameter. */
export class InputError extends Error {
  override readonly name = 'InputError';
  readonly code: InputErrorCode;

  constructor(
    readonly field: InputField,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.code = INPUT_ERROR_CODES[field];
  }

  /** The body both edges print: `{ error: { code, message } }`, the shape of the router's JSON errors. */
  toJSON(): { error: { code: InputErrorCode; message: string } } {
    return { error: { code: this.code, message: this.message } };
  }
}

/**
 * `error` as an InputError of `field` when it is a validation error (`TypeError`/`RangeError`, or an
 * InputError already), else null: anything else is not the input's fault and must not become a 400.
 */
export function inputErrorOf(field: InputField, error: unknown): InputError | null {
  if (error instanceof InputError) return error;
  if (error instanceof TypeError || error instanceof RangeError) return new InputError(field, error.message, { cause: error });
  return null;
}

/** Runs a validator of `field`, rethrowing its validation errors as InputErrors of that field. */
export function checkInput<T>(field: InputField, validate: () => T): T {
  try {
    return validate();
  } catch (error) {
    throw inputErrorOf(field, error) ?? error;
  }
}

/**
 * Awaits an operation whose only unchecked input is `field` (the other arguments were validated
 * before), so a validation error it raises is that field's: e.g. the audit `reason`, which the DbMutex
 * checks itself.
 */
export async function checkInputOf<T>(field: InputField, operation: Promise<T>): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    throw inputErrorOf(field, error) ?? error;
  }
}
