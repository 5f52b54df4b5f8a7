/**
 * Exit codes and the one line a failure prints. Library errors are mapped by their `code`, never
 * by their message.
 */
import { isSessionError } from '../index.js'

/**
 * The exit codes of `tied-session`, one table for every command (its help and README list them):
 * 0 done, 1 not found (a session or a user), 2 bad usage or bad input, 3 the store is unreachable
 * or failing, 4 the store holds data that cannot be read as a session.
 */
export const EXIT = { ok: 0, notFound: 1, usage: 2, unavailable: 3, unreadable: 4 } as const

/** The `code` of the `--json` error document for each exit code. */
const CODES: Record<number, string> = {
  [EXIT.notFound]: 'ERR_NOT_FOUND',
  [EXIT.usage]: 'ERR_USAGE',
  [EXIT.unavailable]: 'ERR_STORE_UNAVAILABLE',
  [EXIT.unreadable]: 'ERR_UNREADABLE',
}

/** The `--help` line of exit codes. */
export const EXIT_CODES =
  'Exit codes: 0 done, 1 not found (session or user), 2 bad usage or input, 3 store unreachable or failing,\n' +
  '4 data the store holds but cannot be read (not a tied-session session).'

/** A failure the command itself reports: one line, and its exit code. */
export class CliError extends Error {
  override name = 'CliError'
  constructor(
    message: string,
    readonly exitCode: number,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

/** Bad usage (exit 2): the line, then the usage text of `command` (or of the whole tool). */
export class UsageError extends CliError {
  override name = 'UsageError'
  constructor(
    message: string,
    readonly command?: string,
  ) {
    super(message, EXIT.usage)
  }
}

/** Bad input that the usage text would not help with (a path past the end of an array): exit 2, one line. */
export class InputError extends CliError {
  override name = 'InputError'
  constructor(message: string) {
    super(message, EXIT.usage)
  }
}

/** The exit code for any error a command threw. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof CliError) return err.exitCode
  if (isSessionError(err, 'ERR_SESSION_NOT_FOUND')) return EXIT.notFound
  if (isSessionError(err, 'ERR_CORRUPT')) return EXIT.unreadable
  if (isSessionError(err, 'ERR_INVALID_ID') || isSessionError(err, 'ERR_TOO_LARGE') || isOptionError(err)) return EXIT.usage
  // ERR_STORE_UNAVAILABLE, ERR_CONFLICT and ERR_LOCKED (try again later), a file-system error, the unexpected
  return EXIT.unavailable
}

/** A TypeError the library throws for a bad option or value: the caller's mistake, so bad usage. */
export function isOptionError(err: unknown): boolean {
  return err instanceof TypeError && /^(tied-session|fileStore):/.test(err.message)
}

/**
 * The library's advice to a program ("tie a new session (id undefined)", "delete it"), which an
 * operator must not follow blindly: a key may be another application's live data.
 */
const LIBRARY_ADVICE = /;\s*(tie a new session \(id undefined\)|delete it|destroy it(?: or fix the serializer)?)$/

/** The operator's message for `err`, without the `tied-session:` prefix and the library's advice to programs. */
export function messageOf(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const bare = message
    .replace(/^(tied-session|fileStore):\s*/, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim()
    .replace(LIBRARY_ADVICE, '')
  if (isSessionError(err, 'ERR_CORRUPT')) return `${bare}; it is not a tied-session session this command can read (left as it is)`
  return bare || (err instanceof Error ? err.name : 'failed')
}

/** The one line that reports `err`: `tied-session: <message>`. */
export function errorLine(err: unknown): string {
  return `tied-session: ${messageOf(err)}`
}

/** The `--json` document of a failure: `{ error: { code, message, exit } }`, library codes kept. */
export function errorJson(err: unknown): { code: string; message: string; exit: number } {
  const exit = exitCodeOf(err)
  const code = isSessionError(err) ? err.code : (CODES[exit] ?? 'ERR_FAILED')
  return { code, message: messageOf(err), exit }
}
