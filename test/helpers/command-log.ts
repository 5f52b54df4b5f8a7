/**
 * A TCP relay on loopback in front of a memcached server (or a proxy) that logs the commands a
 * client sends through it: each command's first line, as sent (data blocks skipped by their byte
 * count, text and meta alike). For tests that count what the store asks of the server.
 */
import net from 'node:net'
import type { ExecutionContext } from 'ava'

/** A relay started by {@link useCommandLog}. */
export interface CommandLog {
  /** `127.0.0.1:port`, for the store's `servers`. */
  readonly address: string
  /** The command lines sent so far ("gets k", "ms k 2 c T60"), oldest first. */
  lines(): string[]
  /** The command names sent so far ("gets", "ms"), oldest first. */
  verbs(): string[]
  /** Forgets what was logged (before the part of a test that counts). */
  clear(): void
  /** Connections the relay accepted. */
  connections(): number
}

/** Text storage commands: `<verb> <key> <flags> <exptime> <bytes> [cas]`, then a data block. */
const STORAGE = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas'])

/** The data-block bytes (CRLF included) that follow a command line, or 0. */
function dataBytes(words: string[]): number {
  if (STORAGE.has(words[0]!)) return Number(words[4]) + 2
  if (words[0] === 'ms') return Number(words[2]) + 2 // ms <key> <datalen> <flags>*
  return 0
}

/** Starts a relay to `target` (`host:port`) for one test; it and its sockets are closed in teardown. */
export async function useCommandLog<C>(t: ExecutionContext<C>, target: { host: string; port: number }): Promise<CommandLog> {
  let lines: string[] = []
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    connections++
    const upstream = net.connect(target.port, target.host)
    sockets.add(client).add(upstream)
    let pending: Buffer = Buffer.alloc(0)
    let skip = 0
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      let buf: Buffer = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
      for (;;) {
        if (skip > 0) {
          const n = Math.min(skip, buf.length)
          buf = buf.subarray(n)
          skip -= n
          if (skip > 0) break
        }
        const eol = buf.indexOf('\r\n')
        if (eol < 0) break
        const line = buf.toString('latin1', 0, eol)
        buf = buf.subarray(eol + 2)
        lines.push(line)
        skip = dataBytes(line.split(' '))
      }
      pending = buf
    })
    upstream.on('data', (chunk: Buffer) => client.write(chunk))
    // either side closing closes both, as the server closing the connection must reach the client
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('close', end).on('error', end).on('end', end)
    upstream.on('close', end).on('error', end).on('end', end)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  t.teardown(() => {
    for (const socket of sockets) socket.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return {
    address: `127.0.0.1:${(server.address() as net.AddressInfo).port}`,
    lines: () => [...lines],
    verbs: () => lines.map((line) => line.split(' ')[0]!),
    clear: () => void (lines = []),
    connections: () => connections,
  }
}
