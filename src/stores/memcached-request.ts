/**
 * One command to one memcached server on a socket of its own, read through the reply parser:
 * for what the pipelined connection does not carry (key listings, `stats`), which may be long
 * or must not queue behind the store's calls.
 */
import net from 'node:net'
import { socketAddress } from './address.js'
import { ReplyParser, type ParsedReply, type ReplyKind } from './memcached-parser.js'

/** The message of a request whose server closed the connection without answering. */
export const CLOSED = 'connection closed before the answer'

/** Options of {@link memcachedRequest}. */
export interface RequestOptions {
  /** Milliseconds without progress (connect, or the next bytes of the reply) before giving up. */
  timeout: number
  /** Aborts the request (the socket is destroyed). */
  signal?: AbortSignal
}

/**
 * Sends `command` (CRLF added) to `server` (`host:port`) and resolves its reply, parsed as `kind`
 * (a refusal or garbage included: the caller tells). Rejects with a plain Error whose message is
 * a short reason ("connection refused", "no answer in 1000 ms").
 */
export function memcachedRequest(server: string, command: string, kind: ReplyKind, opts: RequestOptions): Promise<ParsedReply> {
  return new Promise((resolve, reject) => {
    if (opts.signal?.aborted) return reject(new Error('aborted'))
    const socket = net.connect(socketAddress(server))
    const parser = new ReplyParser()
    parser.expect(kind)
    let timer: NodeJS.Timeout | undefined
    const settle = (error: Error | undefined, reply?: ParsedReply) => {
      clearTimeout(timer)
      opts.signal?.removeEventListener('abort', abort)
      socket.destroy()
      if (error) reject(error)
      else resolve(reply!)
    }
    const abort = () => settle(new Error('aborted'))
    // A deadline on progress rather than on the whole reply: a listing of many keys takes longer than one call may.
    const arm = () => {
      clearTimeout(timer)
      timer = setTimeout(() => settle(new Error(`no answer in ${opts.timeout} ms`)), opts.timeout)
    }
    arm()
    opts.signal?.addEventListener('abort', abort)
    socket.on('error', (err: NodeJS.ErrnoException) =>
      settle(new Error(err.code === 'ECONNREFUSED' ? 'connection refused' : (err.code ?? err.message))),
    )
    socket.on('data', (chunk: Buffer) => {
      arm()
      const [reply] = parser.push(chunk)
      if (reply) settle(undefined, reply)
    })
    socket.on('close', () => settle(new Error(CLOSED))) // ignored once settled
    socket.write(`${command}\r\n`)
  })
}
