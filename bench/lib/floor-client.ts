/**
 * The floor: a minimal memcached text-protocol client on one socket. Requests are pipelined
 * (the writes of one tick leave in one syscall, replies are matched in order), values are flag-0
 * strings, and there is nothing else: no timeouts, no pool, no reconnect, no checks.
 */
import net from 'node:net'

type Pending = { kind: 'get'; resolve: (v: string | undefined) => void } | { kind: 'store'; resolve: (v: boolean) => void }

const CRLF = Buffer.from('\r\n')
const END = Buffer.from('END\r\n')

export class FloorClient {
  private readonly queue: Pending[] = []
  private head = 0
  private buf: Buffer = Buffer.alloc(0)
  private corked = false

  private constructor(private readonly socket: net.Socket) {
    socket.setNoDelay(true)
    socket.on('data', (chunk: Buffer) => this.onData(chunk))
  }

  static connect(port: number, host = '127.0.0.1'): Promise<FloorClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, host, () => resolve(new FloorClient(socket)))
      socket.once('error', reject)
    })
  }

  get(key: string): Promise<string | undefined> {
    return new Promise((resolve) => {
      this.queue.push({ kind: 'get', resolve })
      this.send(`get ${key}\r\n`)
    })
  }

  set(key: string, value: string, ttl: number): Promise<boolean> {
    return new Promise((resolve) => {
      this.queue.push({ kind: 'store', resolve })
      this.send(`set ${key} 0 ${ttl} ${Buffer.byteLength(value)}\r\n${value}\r\n`)
    })
  }

  close(): void {
    this.socket.destroy()
  }

  private send(text: string): void {
    if (!this.corked) {
      this.corked = true
      this.socket.cork()
      process.nextTick(() => {
        this.corked = false
        this.socket.uncork()
      })
    }
    this.socket.write(text)
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
    let at = 0
    while (this.head < this.queue.length) {
      const next = this.queue[this.head]!
      const eol = this.buf.indexOf(CRLF, at)
      if (eol < 0) break
      if (next.kind === 'store') {
        next.resolve(this.buf.toString('latin1', at, at + 6) === 'STORED')
        at = eol + 2
      } else if (this.buf[at] === 0x45 /* E: END */) {
        next.resolve(undefined)
        at = eol + 2
      } else {
        // VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n
        const line = this.buf.toString('latin1', at, eol)
        const bytes = Number(line.slice(line.lastIndexOf(' ') + 1))
        const endAt = eol + 2 + bytes + 2 + END.length
        if (this.buf.length < endAt) break
        next.resolve(this.buf.toString('utf8', eol + 2, eol + 2 + bytes))
        at = endAt
      }
      this.queue[this.head++] = undefined as unknown as Pending
    }
    this.buf = this.buf.subarray(at)
    if (this.head > 1024 && this.head * 2 > this.queue.length) {
      this.queue.splice(0, this.head)
      this.head = 0
    }
  }
}
