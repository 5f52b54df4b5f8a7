/**
 * One memcached server as the wire client talks to it: one socket, opened on first use and again
 * after a failure; requests pipelined, replies matched in order by the reply parser; a deadline
 * on every request; a server that failed (refused, reset, stalled) refused for a while.
 */
import net from 'node:net'
import { SessionError } from '../errors.js'
import { socketAddress } from './address.js'
import { MAX_TIMER } from './lock.js'
import { ReplyParser, type ParsedReply, type ReplyKind } from './memcached-parser.js'

/**
 * After a server failed (refused or reset the connection, or left a request unanswered past its
 * deadline) it is refused this long: calls fail at once, and a restarted or resumed server serves
 * again within it.
 */
export const RETRY_MS = 1000

interface Request {
  kind: ReplyKind
  /** A write (set/add/replace/cas/delete/touch, ms/md): sent and unanswered, its outcome is unknown. */
  write: boolean
  /** The command, kept only while it waits for the meta probe. */
  command: string | Buffer | undefined
  resolve: (reply: ParsedReply) => void
  reject: (error: SessionError) => void
  deadline: number
}

/** What a server speaks: 'auto' asks it (`mn` on connect), 'meta' (memcached >= 1.6), 'text' (the classic protocol only). */
export type Protocol = 'auto' | 'meta' | 'text'

/** A reply other than a refusal, an error or garbage: what the command answered. */
export type Answer = Exclude<ParsedReply, { kind: 'server_error' | 'out_of_step' }>

/** One server: see the module comment. Every call rejects with `ERR_STORE_UNAVAILABLE` on failure. */
export class Connection {
  private socket: net.Socket | undefined
  /** True once the current socket connected: from then on, what was written may have reached the server. */
  private connected = false
  private readonly parser: ReplyParser
  /** Requests written, oldest first, from `head` on. */
  private queue: Request[] = []
  private head = 0
  /** True while the `mn` probe of the current connection is unanswered. */
  private probing = false
  /** Meta requests made while probing, and every request after them: written once the probe is answered. */
  private held: Request[] = []
  private corked = false
  /** performance.now() at the first write of the current tick (while corked). */
  private tickStart = 0
  /** The deadline sweep: a timer, or after a deadline passed, a look again once pending I/O is in. */
  private timer: NodeJS.Timeout | undefined
  private recheck: NodeJS.Immediate | undefined
  /** Until when calls fail at once, and with what (a message and its cause). */
  private refused: { until: number; message: string; cause: unknown } | undefined
  private closed: SessionError | undefined
  /** Whether the server answered the last `mn` probe with MN (memcached >= 1.6); undefined before any answer. */
  meta: boolean | undefined
  /**
   * The server closed the connection instead of answering `mn` (twemproxy does so on every command
   * it does not know, dropping the replies of whatever was pipelined with it): not asked again
   * while it keeps accepting connections.
   */
  private probeClosed = false

  /**
   * `protocol`: 'auto' probes with `mn` on connect; 'meta' and 'text' say what the server speaks
   * and send no probe.
   */
  constructor(
    readonly address: string,
    private readonly timeout: number,
    private readonly protocol: Protocol = 'auto',
    /** The client-flag bits that mark a value as bytes (ReplyParser). */
    bytesFlags?: number,
  ) {
    if (protocol !== 'auto') this.meta = protocol === 'meta'
    this.parser = new ReplyParser(bytesFlags)
  }

  /** Sends one command whose reply is of `kind`; resolves the reply. A meta command to a server without meta rejects unsent. */
  send(command: string | Buffer, kind: ReplyKind, write: boolean): Promise<Answer> {
    return new Promise<Answer>((resolve, reject) => {
      if (this.closed) return reject(this.closed)
      if (this.refused) {
        const { until, message, cause } = this.refused
        if (performance.now() < until) return reject(unavailable(message, cause)) // a new error each time: its own stack
        this.refused = undefined
      }
      if (kind === 'meta' && this.meta === false) return reject(this.noMeta())
      const socket = this.socket ?? this.connect()
      const request: Request = { kind, write, command: undefined, resolve: resolve as Request['resolve'], reject, deadline: 0 }
      // A meta command waits for the probe's answer (and whatever comes after it, to keep the order).
      // So does every command while nothing is known of the server: a proxy that closes the
      // connection on `mn` drops the replies of the commands pipelined with it (twemproxy does).
      if (this.held.length > 0 || (this.probing && (kind === 'meta' || this.meta === undefined))) {
        request.command = command
        request.deadline = performance.now() + this.timeout
        this.held.push(request)
        return
      }
      this.write(socket, request, command)
    })
  }

  /** True while the server is refused after a failure (calls fail at once): Cache::Memcached's "dead host". */
  get down(): boolean {
    return this.refused !== undefined && performance.now() < this.refused.until
  }

  /** Whether the server speaks meta: the answer to the `mn` sent on connect (connecting if need be). */
  async supportsMeta(): Promise<boolean> {
    if (this.meta !== undefined) return this.meta
    try {
      await this.send('mn\r\n', 'meta', false) // waits for the probe; rejected unsent when the answer is no
      return true
    } catch (err) {
      if (this.meta === false) return false
      throw err
    }
  }

  /** Fails every call in flight and every later one with `error`, and drops the socket. */
  close(error: SessionError): void {
    this.closed = error
    this.fail(error.message.replace(/^tied-session: /, ''), error.cause)
    clearTimeout(this.timer)
    clearImmediate(this.recheck)
  }

  private noMeta(): SessionError {
    return unavailable(
      `memcached ${this.address} does not speak the meta protocol (memcached 1.6 and later do); check supportsMeta() first`,
    )
  }

  private write(socket: net.Socket, request: Request, command: string | Buffer): void {
    if (this.head === this.queue.length) socket.ref() // a call in flight keeps the process alive; an idle store does not
    // The commands of one tick leave in one system call, as a pipelining client sends them.
    if (!this.corked) {
      this.corked = true
      this.tickStart = performance.now()
      socket.cork()
      process.nextTick(this.uncork)
    }
    // deadlines count from the tick's first write (one clock read per tick, not per command)
    if (request.deadline === 0) request.deadline = this.tickStart + this.timeout
    this.queue.push(request)
    this.parser.expect(request.kind)
    if (this.timer === undefined && this.recheck === undefined)
      this.timer = setTimeout(this.sweep, Math.min(request.deadline - this.tickStart + 1, MAX_TIMER)).unref()
    socket.write(command)
  }

  private connect(): net.Socket {
    const socket = net.connect({ ...socketAddress(this.address), noDelay: true })
    socket.unref()
    socket.setKeepAlive(true, 60_000) // a connection dropped silently (a firewall, a crashed host) is found while idle
    let error: Error | undefined
    socket.on('connect', () => {
      if (socket === this.socket) this.connected = true
    })
    socket.on('data', (chunk: Buffer) => socket === this.socket && this.onData(chunk))
    socket.on('error', (err) => (error = err))
    // The server closed (or reset) the connection: the calls on it fail, and the next call opens a
    // new one at once ('end' comes before 'close': calls made in between must not wait on it).
    const closed = () => {
      if (socket !== this.socket) return // dropped on purpose: its calls have failed already
      const message = `memcached ${this.address} failed: ${error?.message ?? 'it closed the connection'}; check that it runs and is reachable`
      // A server that closes (or resets) a connection on `mn` instead of answering it does not
      // speak meta: twemproxy closes on any command it does not know. Not a failure: the calls
      // held for the probe's answer were never sent, and go out now on a new connection, unprobed.
      // (A server that died just then refuses that new connection, and is probed again once back.)
      const code = (error as NodeJS.ErrnoException | undefined)?.code
      if ((!error || code === 'ECONNRESET' || code === 'EPIPE') && this.connected && this.queue[this.head]?.kind === 'probe') {
        this.probeClosed = true
        this.meta = false
        const held = this.held
        this.held = []
        this.fail(message, error) // the probe, and text calls pipelined behind a probe of a reconnect
        return this.resend(held)
      }
      if (error && !this.connected && this.probeClosed && this.protocol === 'auto') {
        // refused, not closed on mn: whatever answers there next is asked again
        this.probeClosed = false
        this.meta = undefined
      }
      // A server that refused or reset the connection is refused for a while, so that calls fail at once.
      if (error) this.refuse(message, error)
      this.fail(message, error)
    }
    socket.on('end', closed)
    socket.on('close', closed)
    this.socket = socket
    this.connected = false
    this.parser.reset()
    // memcached >= 1.6 answers `mn` with MN; older ones with a one-line ERROR, so text commands
    // can follow it at once; meta commands wait for the answer, never sent to a server that cannot read them.
    if (!this.probeClosed && this.protocol === 'auto') {
      this.probing = true
      const probe: Request = { kind: 'probe', write: false, command: undefined, resolve: this.probed, reject: () => {}, deadline: 0 }
      this.write(socket, probe, 'mn\r\n')
    }
    return socket
  }

  /**
   * The probe's answer: MN, or the ERROR (memcached < 1.6) or CLIENT_ERROR (a proxy) of a server
   * without meta. The requests held meanwhile are written now.
   */
  private readonly probed = (reply: ParsedReply): void => {
    this.meta = reply.kind === 'meta' && reply.code === 'MN'
    this.probing = false
    const held = this.held
    this.held = []
    this.resend(held)
  }

  /** Writes calls that were held, never sent (a meta one is rejected when the server has none); connects if need be. */
  private resend(held: Request[]): void {
    for (const request of held) {
      if (this.closed) request.reject(this.closed)
      else if (request.kind === 'meta' && !this.meta) request.reject(this.noMeta())
      else this.write(this.socket ?? this.connect(), request, request.command!)
      request.command = undefined
    }
  }

  /** Calls fail at once with `message` for RETRY_MS: a server that cannot be reached is not asked again for each call. */
  private refuse(message: string, cause?: unknown): void {
    this.refused = { until: performance.now() + RETRY_MS, message, cause }
  }

  /**
   * Fails the calls in flight and drops the socket (replies come in order: one that never came
   * makes it useless). A write that reached a connected socket may still be applied: its error
   * says the outcome is unknown; one held back, or on a socket that never connected, was not sent.
   */
  private fail(message: string, cause: unknown): void {
    const socket = this.socket
    const sent = this.connected
    this.socket = undefined
    this.connected = false
    this.probing = false
    socket?.destroy()
    this.parser.reset()
    const failed = this.queue.slice(this.head)
    const held = this.held
    this.queue = []
    this.head = 0
    this.held = []
    for (const request of failed) request.reject(unavailable(message, cause, request.write && sent))
    for (const request of held) request.reject(unavailable(message, cause))
  }

  private readonly uncork = (): void => {
    this.corked = false
    this.socket?.uncork()
  }

  /** Fails the calls in flight once the oldest is past its deadline (every call has the same timeout: the oldest is first). */
  private readonly sweep = (): void => {
    this.timer = undefined
    const oldest = this.queue[this.head] ?? this.held[0]
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
      if ((this.queue[this.head] ?? this.held[0]) !== oldest) return this.sweep()
      const message = `no answer from memcached ${this.address} in ${this.timeout} ms; check that it runs and is reachable`
      // Unreachable, or connected and stalled (SIGSTOP, a hung host): refused like a dead server,
      // so that the next calls fail at once instead of each waiting for its deadline.
      this.refuse(message)
      this.fail(message, undefined)
    }) // not unref'ed: an unref'ed immediate lets the poll phase wait for I/O that may never come
  }

  private onData(chunk: Buffer): void {
    for (const reply of this.parser.push(chunk)) {
      const request = this.queue[this.head]
      if (request === undefined || reply.kind === 'out_of_step')
        return this.outOfStep(request, reply.kind === 'out_of_step' ? reply.line : '')
      this.queue[this.head++] = undefined as unknown as Request
      if (reply.kind === 'server_error') {
        // The server refused this command (out of memory, item too large) and stays in step.
        request.reject(unavailable(`memcached ${this.address} answered "${reply.line}"; check its memory (-m) and item size (-I)`))
      } else request.resolve(reply)
    }
    if (this.head === this.queue.length) {
      this.queue = []
      this.head = 0
      if (this.held.length === 0) this.socket?.unref()
    } else if (this.head >= 1024) {
      // under steady load the queue may never empty: drop the answered slots now and then
      this.queue = this.queue.slice(this.head)
      this.head = 0
    }
  }

  /** A reply that fits no request (ERROR, CLIENT_ERROR, garbage): nothing after it can be trusted. */
  private outOfStep(request: Request | undefined, line: string): void {
    const said = line.slice(0, 200)
    if (/^ERROR ./.test(line)) {
      // the server's own words, not an answer ("ERROR Too many open connections"), and it closes the connection
      const message = `memcached ${this.address} answered "${said}"; check its connection limit (-c) and load`
      this.refuse(message)
      return this.fail(message, undefined)
    }
    if (request) this.queue[this.head++] = undefined as unknown as Request
    request?.reject(unavailable(`memcached ${this.address} answered "${said}", out of step with the requests`, undefined, request.write))
    this.fail(`memcached ${this.address} is out of step with the requests; the connection was dropped`, undefined)
  }
}

function unavailable(message: string, cause?: unknown, outcomeUnknown = false): SessionError {
  return new SessionError('ERR_STORE_UNAVAILABLE', message, {
    ...(cause === undefined ? {} : { cause }),
    ...(outcomeUnknown ? { outcomeUnknown } : {}),
  })
}
