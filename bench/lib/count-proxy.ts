/**
 * A TCP relay on 127.0.0.1 in front of a memcached server (or a proxy) that counts what a client
 * asks of it: commands (text and meta; data blocks skipped by their byte count), keys asked for
 * by get/gets, commands by name, and round trips. A round trip begins when the client sends after
 * having received a reply since its last send, so requests written together (pipelined, or in
 * parallel in one tick) count once. With `log`, it also keeps each command's first line (the
 * tests' command log, test/helpers/command-log.ts).
 */
import net from 'node:net'

export interface Counts {
  commands: number
  keys: number
  roundTrips: number
  /** Commands by their first word (get, gets, cas, mg, touch, ...). */
  verbs: Record<string, number>
}

export interface CountProxy {
  readonly address: string
  /** Resets the counts and returns what they were. */
  take(): Counts
  /** With `log`: the command lines sent since the last {@link clearLines} ("gets k", "ms k 2 c T60"), oldest first. */
  lines(): string[]
  clearLines(): void
  /** Connections the relay accepted. */
  connections(): number
  close(): Promise<void>
}

/** Text storage commands: `<verb> <key> <flags> <exptime> <bytes> [cas]`, then a data block. */
const STORAGE = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas'])

/** The data-block bytes (CRLF included) that follow a command line, or 0. */
function dataBytes(words: string[]): number {
  if (STORAGE.has(words[0]!)) return Number(words[4]) + 2
  if (words[0] === 'ms') return Number(words[2]) + 2 // ms <key> <datalen> <flags>*
  return 0
}

const noCounts = (): Counts => ({ commands: 0, keys: 0, roundTrips: 0, verbs: {} })

export function countProxy(targetPort: number, opts: { host?: string; log?: boolean } = {}): Promise<CountProxy> {
  let counts = noCounts()
  let lines: string[] = []
  let connections = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    connections++
    const upstream = net.connect(targetPort, opts.host ?? '127.0.0.1')
    sockets.add(client).add(upstream)
    let pending: Buffer = Buffer.alloc(0)
    let skip = 0 // data-block bytes of a storage command still to pass
    let replied = true
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      if (replied) counts.roundTrips++
      replied = false
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
        const words = line.split(' ')
        buf = buf.subarray(eol + 2)
        if (opts.log) lines.push(line)
        counts.commands++
        counts.verbs[words[0]!] = (counts.verbs[words[0]!] ?? 0) + 1
        if (words[0] === 'get' || words[0] === 'gets') counts.keys += words.length - 1
        skip = dataBytes(words)
      }
      pending = buf
    })
    upstream.on('data', (chunk: Buffer) => {
      replied = true
      client.write(chunk)
    })
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
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      resolve({
        address: `127.0.0.1:${port}`,
        take() {
          const c = counts
          counts = noCounts()
          return c
        },
        lines: () => [...lines],
        clearLines: () => void (lines = []),
        connections: () => connections,
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          }),
      })
    })
  })
}
