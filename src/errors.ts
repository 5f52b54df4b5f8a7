/** The stable codes a {@link SessionError} carries. */
export type SessionErrorCode =
  | 'ERR_SESSION_NOT_FOUND'
  | 'ERR_INVALID_ID'
  | 'ERR_STORE_UNAVAILABLE'
  | 'ERR_CONFLICT'
  | 'ERR_LOCKED'
  | 'ERR_TOO_LARGE'
  | 'ERR_CORRUPT'
  | 'ERR_STALE_VIEW'

/**
 * The one error class of tied-session: test `err.code`, never the message.
 *
 * @example
 * try { await tieSession(id) } catch (err) {
 *   if (err instanceof SessionError && err.code === 'ERR_SESSION_NOT_FOUND') return login()
 *   throw err
 * }
 */
export class SessionError extends Error {
  override name = 'SessionError'
  readonly code: SessionErrorCode
  /**
   * True when a write was sent and no answer came (a timeout, a connection lost after sending):
   * the server may still apply it, so the write may or may not have happened. False otherwise.
   */
  readonly outcomeUnknown: boolean

  constructor(code: SessionErrorCode, message: string, options?: { cause?: unknown; outcomeUnknown?: boolean }) {
    super(`tied-session: ${message}`, options?.cause === undefined ? undefined : { cause: options.cause })
    this.code = code
    this.outcomeUnknown = options?.outcomeUnknown ?? false
  }
}

/** True when `err` is a {@link SessionError}, optionally with the given code. */
export function isSessionError(err: unknown, code?: SessionErrorCode): err is SessionError {
  return err instanceof SessionError && (code === undefined || err.code === code)
}

/** The error for a session that is not (or no longer) in the store. */
export function notFound(id: string, detail = 'it does not exist or has expired'): SessionError {
  return new SessionError('ERR_SESSION_NOT_FOUND', `session ${id} not found: ${detail}; tie a new session (id undefined)`)
}
