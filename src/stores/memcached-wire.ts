/**
 * The store's own memcached client: the text protocol on one pipelined socket per server.
 *
 * Not the npm `memcached` client (still accepted as an injected `client`): it never calls back
 * when a socket dies or a server stalls, retries a refused connect for 100 s, can crash the process
 * (flag-2 items, `spawn ping`), escapes CR and LF in values, and spends about 9 µs of CPU more per
 * get + set than this client does (bench/README.md). Here every request has a deadline, a server
 * that fails is refused for a second, values are stored byte for byte, and replies are framed by
 * their byte count.
 */
import { createRequire } from 'node:module'
import net from 'node:net'
import { SessionError } from '../errors.js'
import { socketAddress } from './address.js'
import { MAX_TIMER } from './lock.js'

/** An item as read: its value (UTF-8), its flags (0 for the plain strings this library writes), and for `gets` its cas unique. */
export interface Item {
  value: string
  flags: number
  cas: string | undefined
}

/** The one-line replies of the commands the store sends. */
export type Reply = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' | 'TOUCHED'

/**
 * The servers of one side (principal or local), as the store calls them: a {@link WireClient}, or
 * an injected npm `memcached`-style client adapted by ./memcached-injected.ts. Failures reject
 * with `ERR_STORE_UNAVAILABLE`; a SERVER_ERROR reply too.
 */
export interface Pool {
  readonly servers: readonly string[]
  /** An injected client: its quirks with keys and values apply (see the store's key and size checks). */
  readonly injected: boolean
  /** The key prefix an injected client adds ('' here). */
  readonly namespace: string
  serverOf(key: string): string
  get(key: string): Promise<Item | undefined>
  gets(key: string): Promise<Item | undefined>
  store(mode: 'set' | 'add' | 'replace', key: string, value: string, exptime: number): Promise<Reply>
  cas(key: string, value: string, cas: string, exptime: number): Promise<Reply>
  delete(key: string): Promise<Reply>
  touch(key: string, exptime: number): Promise<Reply>
  /** Fails the calls in flight and every later one with `error`; ends the client unless it was injected. */
  close(error: SessionError): void
}

/** After a connection error a server is refused this long: calls fail at once, and a restarted server serves again within it. */
const RETRY_MS = 1000
const LF = 0x0a
const REPLIES = new Set<string>(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND', 'DELETED', 'TOUCHED'])

interface Request {
  /** true: VALUE lines then END (get, gets); false: one line. */
  items: boolean
  resolve: (answer: never) => void
  reject: (error: SessionError) => void
  deadline: number
  item: Item | undefined
}

const unavailable = (message: string, cause?: unknown) =>
  new SessionError('ERR_STORE_UNAVAILABLE', message, cause === undefined ? undefined : { cause })

/** One server: one socket, opened on first use and again after a failure; requests pipelined, replies matched in order. */
class Connection {
  private socket: net.Socket | undefined
  /** Requests in flight, oldest first, from `head` on. */
  private queue: Request[] = []
  private head = 0
  /** Bytes received and not parsed yet, and how many are needed before parsing again (a value's size). */
  private chunks: Buffer[] = []
  private received = 0
  private needed = 0
  private corked = false
  /** The deadline sweep: a timer, or after a deadline passed, a look again once pending I/O is in. */
  private timer: NodeJS.Timeout | undefined
  private recheck: NodeJS.Immediate | undefined
  /** Until when calls fail at once, and with what (a message and its cause). */
  private refused: { until: number; message: string; cause: unknown } | undefined
  private closed: SessionError | undefined

  constructor(
    readonly address: string,
    private readonly timeout: number,
  ) {}

  /** Sends one command; resolves the reply line, or the item of a get (undefined for a miss). */
  send<T>(command: string, items: boolean): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.closed) return reject(this.closed)
      if (this.refused) {
        const { until, message, cause } = this.refused
        if (performance.now() < until) return reject(unavailable(message, cause)) // a new error each time: its own stack
        this.refused = undefined
      }
      const socket = this.socket ?? this.connect()
      if (this.head === this.queue.length) socket.ref() // a call in flight keeps the process alive; an idle store does not
      const deadline = performance.now() + this.timeout
      this.queue.push({ items, resolve: resolve as (answer: never) => void, reject, deadline, item: undefined })
      if (this.timer === undefined && this.recheck === undefined)
        this.timer = setTimeout(this.sweep, Math.min(this.timeout + 1, MAX_TIMER)).unref()
      // The commands of one tick leave in one system call, as a pipelining client sends them.
      if (!this.corked) {
        this.corked = true
        socket.cork()
        process.nextTick(this.uncork)
      }
      socket.write(command)
    })
  }

  /** Fails every call in flight and every later one with `error`, and drops the socket. */
  close(error: SessionError): void {
    this.closed = error
    this.fail(error)
    clearTimeout(this.timer)
    clearImmediate(this.recheck)
  }

  private connect(): net.Socket {
    const socket = net.connect({ ...socketAddress(this.address), noDelay: true })
    socket.unref()
    socket.setKeepAlive(true, 60_000) // a connection dropped silently (a firewall, a crashed host) is found while idle
    let error: Error | undefined
    socket.on('data', (chunk: Buffer) => socket === this.socket && this.onData(chunk))
    socket.on('error', (err) => (error = err))
    // The server closed (or reset) the connection: the calls on it fail, and the next call opens a
    // new one at once ('end' comes before 'close': calls made in between must not wait on it).
    const closed = () => {
      if (socket !== this.socket) return // dropped on purpose: its calls have failed already
      const message = `memcached ${this.address} failed: ${error?.message ?? 'it closed the connection'}; check that it runs and is reachable`
      // A server that refused or reset the connection is refused for a while, so that calls fail at once.
      if (error) this.refuse(message, error)
      this.fail(unavailable(message, error))
    }
    socket.on('end', closed)
    socket.on('close', closed)
    this.socket = socket
    return socket
  }

  /** Calls fail at once with `message` for RETRY_MS: a server that cannot be reached is not asked again for each call. */
  private refuse(message: string, cause?: unknown): void {
    this.refused = { until: performance.now() + RETRY_MS, message, cause }
  }

  /** Fails the calls in flight and drops the socket (replies come in order: one that never came makes it useless). */
  private fail(error: SessionError): void {
    const socket = this.socket
    this.socket = undefined
    socket?.destroy()
    this.chunks = []
    this.received = this.needed = 0
    const failed = this.queue
    const from = this.head
    this.queue = []
    this.head = 0
    for (let i = from; i < failed.length; i++) failed[i]!.reject(error)
  }

  private readonly uncork = (): void => {
    this.corked = false
    this.socket?.uncork()
  }

  /** Fails the calls in flight once the oldest is past its deadline (every call has the same timeout: the oldest is first). */
  private readonly sweep = (): void => {
    this.timer = undefined
    const oldest = this.queue[this.head]
    if (oldest === undefined) return
    const now = performance.now()
    if (oldest.deadline > now) {
      this.timer = setTimeout(this.sweep, Math.min(oldest.deadline - now + 1, MAX_TIMER)).unref()
      return
    }
    // Timers run before I/O: after the event loop was blocked, a reply may be waiting to be read.
    // Look again once pending I/O is in, and fail only if that call is still unanswered.
    this.recheck = setImmediate(() => {
      this.recheck = undefined
      if (this.queue[this.head] !== oldest) return this.sweep()
      const message = `no answer from memcached ${this.address} in ${this.timeout} ms; check that it runs and is reachable`
      if (this.socket?.connecting) this.refuse(message) // not even connected: the host is unreachable
      this.fail(unavailable(message))
    }) // not unref'ed: an unref'ed immediate lets the poll phase wait for I/O that may never come
  }

  private onData(chunk: Buffer): void {
    this.chunks.push(chunk)
    this.received += chunk.length
    if (this.received < this.needed) return // the rest of a value is still to come
    const buf = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.received)
    let at = 0
    this.needed = 0
    while (this.head < this.queue.length) {
      const request = this.queue[this.head]!
      const eol = buf.indexOf(LF, at)
      if (eol < 0) break
      const line = buf.toString('latin1', at, buf[eol - 1] === 0x0d ? eol - 1 : eol)
      if (request.items && line.startsWith('VALUE ')) {
        // VALUE <key> <flags> <bytes> [<cas unique>]; the data follows, framed by its byte count
        const [, , flags, bytes, cas] = line.split(' ')
        const start = eol + 1
        const end = start + Number(bytes)
        if (!(end >= start) || flags === undefined) return this.outOfStep(request, line)
        if (buf.length < end + 2) {
          this.needed = end + 2 - at
          break
        }
        if (buf[end] !== 0x0d || buf[end + 1] !== LF) return this.outOfStep(request, line) // a wrong byte count
        request.item = { value: buf.toString('utf8', start, end), flags: Number(flags), cas }
        at = end + 2
        continue
      }
      at = eol + 1
      this.queue[this.head++] = undefined as unknown as Request
      if (request.items ? line === 'END' : REPLIES.has(line)) request.resolve((request.items ? request.item : line) as never)
      else if (line.startsWith('SERVER_ERROR')) {
        // The server refused this command (out of memory, item too large) and stays in step.
        request.reject(unavailable(`memcached ${this.address} answered "${line}"; check its memory (-m) and item size (-I)`))
      } else return this.outOfStep(request, line)
    }
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
      this.socket?.unref()
    } else if (this.head >= 1024) {
      // under steady load the queue may never empty: drop the answered slots now and then
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
    this.received = buf.length - at
    this.chunks = this.received === 0 ? [] : [buf.subarray(at)]
  }

  /** A reply that fits no request (ERROR, CLIENT_ERROR, garbage): nothing after it can be trusted. */
  private outOfStep(request: Request, line: string): void {
    const said = line.slice(0, 200)
    if (/^ERROR ./.test(line)) {
      // the server's own words, not an answer ("ERROR Too many open connections"), and it closes the connection
      const message = `memcached ${this.address} answered "${said}"; check its connection limit (-c) and load`
      this.refuse(message)
      request.reject(unavailable(message))
      return this.fail(unavailable(message))
    }
    request.reject(unavailable(`memcached ${this.address} answered "${said}", out of step with the requests`))
    this.fail(unavailable(`memcached ${this.address} is out of step with the requests; the connection was dropped`))
  }
}

type HashRing = { get(key: string): string }
const HashRingClass = createRequire(import.meta.url)('hashring') as new (
  servers: readonly string[],
  algorithm: string,
  options: Record<string, unknown>,
) => HashRing

/**
 * A client for a pool of servers. Keys go to servers as the npm `memcached` client sends them
 * (the same hashring, ketama-compatible), so both can share a pool.
 */
export class WireClient implements Pool {
  readonly injected = false
  readonly namespace = ''
  private readonly connections = new Map<string, Connection>()
  private readonly ring: HashRing | undefined
  private readonly only: Connection | undefined

  constructor(
    readonly servers: readonly string[],
    timeout: number,
  ) {
    for (const server of servers) this.connections.set(server, new Connection(server, timeout))
    if (servers.length === 1) this.only = this.connections.get(servers[0]!)
    else this.ring = new HashRingClass(servers, 'md5', { compatibility: 'ketama', 'default port': 11211 })
  }

  serverOf(key: string): string {
    return this.only?.address ?? this.ring!.get(key)
  }

  private on(key: string): Connection {
    return this.only ?? this.connections.get(this.ring!.get(key))!
  }

  get(key: string): Promise<Item | undefined> {
    return this.on(key).send(`get ${key}\r\n`, true)
  }

  gets(key: string): Promise<Item | undefined> {
    return this.on(key).send(`gets ${key}\r\n`, true)
  }

  /** set, add or replace; the value is sent byte for byte (UTF-8) with flags 0. */
  store(mode: 'set' | 'add' | 'replace', key: string, value: string, exptime: number): Promise<Reply> {
    return this.on(key).send(`${mode} ${key} 0 ${exptime} ${Buffer.byteLength(value)}\r\n${value}\r\n`, false)
  }

  cas(key: string, value: string, cas: string, exptime: number): Promise<Reply> {
    return this.on(key).send(`cas ${key} 0 ${exptime} ${Buffer.byteLength(value)} ${cas}\r\n${value}\r\n`, false)
  }

  delete(key: string): Promise<Reply> {
    return this.on(key).send(`delete ${key}\r\n`, false)
  }

  touch(key: string, exptime: number): Promise<Reply> {
    return this.on(key).send(`touch ${key} ${exptime}\r\n`, false)
  }

  /** Fails the calls in flight and every later one with `error`; closes the sockets. */
  close(error: SessionError): void {
    for (const connection of this.connections.values()) connection.close(error)
  }
}
