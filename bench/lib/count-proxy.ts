/**
 * A TCP relay on 127.0.0.1 in front of a memcached server that counts what a client asks of
 * it (text protocol): commands, keys asked for by get/gets, and round trips. A round trip
 * begins when the client sends after having received a reply since its last send, so
 * requests written together (pipelined, or in parallel in one tick) count once.
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
  close(): Promise<void>
}

const STORAGE = new Set(['set', 'add', 'replace', 'append', 'prepend', 'cas'])

export function countProxy(targetPort: number): Promise<CountProxy> {
  let counts: Counts = { commands: 0, keys: 0, roundTrips: 0, verbs: {} }
  const sockets = new Set<net.Socket>()
  const server = net.createServer((client) => {
    const upstream = net.connect(targetPort, '127.0.0.1')
    sockets.add(client).add(upstream)
    let pending = Buffer.alloc(0)
    let skip = 0 // data-block bytes of a storage command still to pass
    let replied = true
    client.on('data', (chunk: Buffer) => {
      upstream.write(chunk)
      if (replied) counts.roundTrips++
      replied = false
      let buf = Buffer.concat([pending, chunk])
      for (;;) {
        if (skip > 0) {
          const n = Math.min(skip, buf.length)
          buf = buf.subarray(n)
          skip -= n
          if (skip > 0) break
        }
        const eol = buf.indexOf('\r\n')
        if (eol < 0) break
        const words = buf.toString('latin1', 0, eol).split(' ')
        buf = buf.subarray(eol + 2)
        counts.commands++
        counts.verbs[words[0]!] = (counts.verbs[words[0]!] ?? 0) + 1
        if (words[0] === 'get' || words[0] === 'gets') counts.keys += words.length - 1
        if (STORAGE.has(words[0]!)) skip = Number(words[4]) + 2
        else if (words[0] === 'ms') skip = Number(words[2]) + 2 // ms <key> <datalen> <flags>*
      }
      pending = buf
    })
    upstream.on('data', (chunk: Buffer) => {
      replied = true
      client.write(chunk)
    })
    const end = () => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('close', end).on('error', end)
    upstream.on('close', end).on('error', end)
  })
  return new Promise((resolve) => {
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      resolve({
        address: `127.0.0.1:${port}`,
        take() {
          const c = counts
          counts = { commands: 0, keys: 0, roundTrips: 0, verbs: {} }
          return c
        },
        close: () =>
          new Promise<void>((done) => {
            for (const s of sockets) s.destroy()
            server.close(() => done())
          }),
      })
    })
  })
}
