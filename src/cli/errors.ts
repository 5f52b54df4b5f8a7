/**
 * Exit codes and the one line a failure prints. Library errors are mapped by their `code`, never
 * by their message.
 */
import { isSessionError } from '../index.js'

/** The exit codes of `tied-session`, as its help lists them. */
export const EXIT = { ok: 0, notFound: 1, usage: 2, unavailable: 3 } as const

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

/** The exit code for any error a command threw. */
export function exitCodeOf(err: unknown): number {
  if (err instanceof CliError) return err.exitCode
  if (isSessionError(err, 'ERR_SESSION_NOT_FOUND')) return EXIT.notFound
  if (isSessionError(err, 'ERR_STORE_UNAVAILABLE')) return EXIT.unavailable
  if (isSessionError(err, 'ERR_INVALID_ID') || isOptionError(err)) return EXIT.usage
  // ERR_CONFLICT, ERR_LOCKED, ERR_TOO_LARGE, ERR_CORRUPT and the unexpected
  return 1
}

/** A TypeError the library throws for a bad option or value: the caller's mistake, so bad usage. */
export function isOptionError(err: unknown): boolean {
  return err instanceof TypeError && /^(tied-session|fileStore):/.test(err.message)
}

/** The one line that reports `err`: `tied-session: <message>`, whatever the message started with. */
export function errorLine(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const bare = message
    .replace(/^(tied-session|fileStore):\s*/, '')
    .replace(/\s*\n\s*/g, ' ')
    .trim()
  return `tied-session: ${bare || (err instanceof Error ? err.name : 'failed')}`
}
