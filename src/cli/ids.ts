/**
 * Session ids as the command takes them: checked before any I/O, as tieSession checks them.
 */
import { UsageError } from './errors.js'

/** The shape of a session id: 1-128 chars of [A-Za-z0-9_-] (src/ids.ts checks the same). */
const SESSION_ID = /^[A-Za-z0-9_-]{1,128}$/

/** True when `key` has the shape of a session id. */
export function isSessionId(key: string): boolean {
  return SESSION_ID.test(key)
}

/** Throws UsageError (exit 2) for the first argument that cannot be a session id. */
export function checkIds(ids: string[], command: string): void {
  const bad = ids.find((id) => !isSessionId(id))
  if (bad !== undefined) {
    throw new UsageError(`invalid session id ${JSON.stringify(bad)}: an id is 1-128 chars of letters, digits, "_" and "-"`, command)
  }
}
