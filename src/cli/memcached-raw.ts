/**
 * Raw commands to one memcached server over a socket of their own, with a deadline, read through
 * the store's reply parser: the store's client has no `stats`, and a down or stalled server must
 * answer within the timeout.
 */
import type { ParsedReply, ReplyKind } from '../stores/memcached-parser.js'
import { memcachedRequest } from '../stores/memcached-request.js'

/** What `stats` told: name -> value, as the server sent it. */
export type Stats = Record<string, string>

/** Sends `command` (CRLF added) to `server` (`host:port`) and resolves its reply parsed as `kind`; rejects with a one-line reason. */
export function memcachedCommand(server: string, command: string, kind: ReplyKind, timeoutMs: number): Promise<ParsedReply> {
  return memcachedRequest(server, command, kind, { timeout: timeoutMs })
}

/** The first line of a reply that is a refusal or out of step ('' for a reply that is an answer): what the server said. */
export function replyLine(reply: ParsedReply): string {
  return reply.kind === 'refused' || reply.kind === 'out_of_step' || reply.kind === 'server_error' ? reply.line : ''
}

/** `stats` of `server`. */
export async function memcachedStats(server: string, timeoutMs: number): Promise<Stats> {
  const reply = await memcachedCommand(server, 'stats', 'stats', timeoutMs)
  if (reply.kind !== 'stats') throw new Error(`it answered ${JSON.stringify(replyLine(reply))} to stats; is this memcached?`)
  return reply.stats
}

/** True when memcached `version` ("1.6.18") is at least `min` ("1.4.31"). */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split('.').map((n) => parseInt(n, 10) || 0)
  const b = min.split('.').map((n) => parseInt(n, 10) || 0)
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    if ((a[i] ?? 0) !== (b[i] ?? 0)) return (a[i] ?? 0) > (b[i] ?? 0)
  }
  return true
}
