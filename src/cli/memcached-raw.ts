/**
 * Raw commands to one memcached server over a socket of their own, with a deadline: the store's
 * client has no `stats`, and a down or stalled server must answer within the timeout.
 */
import net from 'node:net'
import { socketAddress } from '../stores/address.js'

/** What `stats` told: name -> value, as the server sent it. */
export type Stats = Record<string, string>

/** A line that ends a reply of memcached's text protocol (an error, or the status of a command). */
const LAST_LINE = /(^|\r\n)(END|OK|BUSY|BADCLASS|NOTSTARTED|ERROR|CLIENT_ERROR|SERVER_ERROR)( [^\r\n]*)?\r\n$/

/** Sends `command` (CRLF added) to `server` (`host:port`) and resolves the whole reply; rejects with a one-line reason. */
export function memcachedCommand(server: string, command: string, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(socketAddress(server))
    let reply = ''
    const settle = (error: Error | undefined) => {
      clearTimeout(timer)
      socket.destroy()
      if (error) reject(error)
      else resolve(reply)
    }
    // one deadline for connect and reply: the socket's own timeout only measures idleness
    const timer = setTimeout(() => settle(new Error(`no answer in ${timeoutMs} ms`)), timeoutMs)
    socket.setEncoding('utf8')
    socket.on('error', (err: NodeJS.ErrnoException) =>
      settle(new Error(err.code === 'ECONNREFUSED' ? 'connection refused' : (err.code ?? err.message))),
    )
    socket.on('data', (chunk: string) => {
      reply += chunk
      if (LAST_LINE.test(reply)) settle(undefined)
    })
    socket.on('close', () => settle(new Error('connection closed before the answer'))) // ignored once settled
    socket.write(`${command}\r\n`)
  })
}

/** `stats` of `server`. */
export async function memcachedStats(server: string, timeoutMs: number): Promise<Stats> {
  const reply = await memcachedCommand(server, 'stats', timeoutMs)
  if (!reply.endsWith('END\r\n')) throw new Error(`it answered ${JSON.stringify(reply.trim())} to stats; is this memcached?`)
  const stats: Stats = {}
  for (const line of reply.split('\r\n')) {
    const [word, name, ...value] = line.split(' ')
    if (word === 'STAT' && name !== undefined) stats[name] = value.join(' ')
  }
  return stats
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
