import { randomBytes } from 'node:crypto'
import { SessionError } from './errors.js'

/** A new session id: 128 random bits as 32 lowercase hex chars, the shape of Apache::Session's MD5 ids. */
export function newId(): string {
  return randomBytes(16).toString('hex')
}

const VALID_ID = /^[A-Za-z0-9_-]{1,128}$/

/** Throws `ERR_INVALID_ID` unless `id` is 1-128 chars of `[A-Za-z0-9_-]`; checked before any I/O. */
export function checkId(id: unknown): string {
  if (typeof id === 'string' && VALID_ID.test(id)) return id
  const shown = typeof id === 'string' ? JSON.stringify(id.length > 40 ? `${id.slice(0, 40)}…` : id) : typeof id
  const why =
    typeof id !== 'string'
      ? 'it is not a string'
      : id.length > 128
        ? `it is ${id.length} chars long`
        : 'it has a character outside [A-Za-z0-9_-]'
  throw new SessionError(
    'ERR_INVALID_ID',
    `invalid session id ${shown}: ${why}; an id is 1-128 chars of letters, digits, "_" and "-" (pass undefined for a new session)`,
  )
}
