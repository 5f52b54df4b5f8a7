/**
 * The store's own memcached client: the text protocol, and the meta protocol where the server
 * speaks it, on one pipelined socket per server (./memcached-connection.ts).
 *
 * Not the npm `memcached` client (still accepted as an injected `client`): it never calls back
 * when a socket dies or a server stalls, retries a refused connect for 100 s, can crash the process
 * (flag-2 items, `spawn ping`), escapes CR and LF in values, and spends about 9 µs of CPU more per
 * get + set than this client does (bench/README.md). Here every request has a deadline, a server
 * that fails or stalls is refused for a second, values are stored byte for byte, and replies are
 * framed by their byte count (./memcached-parser.ts).
 */
import { createRequire } from 'node:module'
import { utf8Length } from '../ascii.js'
import { SessionError } from '../errors.js'
import { Connection, type Answer, type Protocol } from './memcached-connection.js'
import type { Crc32Buckets } from './memcached-crc32.js'
import type { Item, ReplyKind, Status } from './memcached-parser.js'

export type { Item } from './memcached-parser.js'
export type { Protocol } from './memcached-connection.js'

/** The one-line replies of the text commands the store sends. */
export type Reply = Status

/** What {@link Pool.metaGet} asks for: the value, cas, remaining ttl, size, flags; `touch` sets a new exptime. */
export interface MetaGetOptions {
  value?: boolean
  cas?: boolean
  ttl?: boolean
  size?: boolean
  flags?: boolean
  /** A new exptime (memcached's: seconds, or a Unix time past 30 days), set as the item is read. */
  touch?: number
}

/** An item as {@link Pool.metaGet} read it: what was asked for. `ttl` is the seconds left, -1 = never expires. */
export interface MetaItem {
  value?: string | Buffer
  cas?: string
  ttl?: number
  size?: number
  flags?: number
}

/** How {@link Pool.metaSet} writes: `mode` as the text commands, `cas` to write only at that version. */
export interface MetaSetOptions {
  mode: 'set' | 'add' | 'replace'
  cas?: string
  /** memcached's exptime, sent as is: seconds, 0 = never, over 30 days a Unix time. */
  ttl: number
  /** The item's client flags. @default 0 */
  flags?: number
}

/**
 * What {@link Pool.metaSet} did: `stored` (with the item's new cas), `exists` (the cas did not
 * match), `not_found` (a cas write to a missing item), `not_stored` (an add of an existing item, a
 * replace of a missing one).
 */
export interface MetaSetResult {
  result: 'stored' | 'exists' | 'not_found' | 'not_stored'
  cas?: string
}

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
  /** set, add or replace `value` (a string as its UTF-8 bytes, a Buffer as is) with client `flags` (default 0). */
  store(mode: 'set' | 'add' | 'replace', key: string, value: string | Buffer, exptime: number, flags?: number): Promise<Reply>
  cas(key: string, value: string | Buffer, cas: string, exptime: number, flags?: number): Promise<Reply>
  delete(key: string): Promise<Reply>
  touch(key: string, exptime: number): Promise<Reply>
  /**
   * Whether the server of `key` speaks the meta protocol (memcached >= 1.6), as found by an `mn`
   * sent on connect. The meta calls reject with `ERR_STORE_UNAVAILABLE`, unsent, where it does not.
   */
  supportsMeta(key: string): Promise<boolean>
  /** What {@link supportsMeta} would say, when already known (no await); undefined when it must ask. */
  knownMeta?(key: string): boolean | undefined
  /** `mg`: undefined on a miss, else what `opts` asked for. */
  metaGet(key: string, opts?: MetaGetOptions): Promise<MetaItem | undefined>
  /** `ms`: writes `value` (a string as UTF-8, a Buffer as is); a stored write returns the item's new cas. */
  metaSet(key: string, value: string | Buffer, opts: MetaSetOptions): Promise<MetaSetResult>
  /** `md`: deletes `key`, with `cas` only at that version. */
  metaDelete(key: string, opts?: { cas?: string }): Promise<'deleted' | 'not_found' | 'exists'>
  /** Fails the calls in flight and every later one with `error`; ends the client unless it was injected. */
  close(error: SessionError): void
}

/** What memcached's cas unique looks like: a version that is not one cannot be the item's. */
export const CAS_UNIQUE = /^\d+$/

type HashRing = { get(key: string): string }
const HashRingClass = createRequire(import.meta.url)('hashring') as new (
  servers: readonly string[],
  algorithm: string,
  options: Record<string, unknown>,
) => HashRing

/**
 * A client for a pool of servers. Keys go to servers as the npm `memcached` client sends them
 * (the same hashring, ketama-compatible), so both can share a pool; or, given `crc32` buckets, as
 * Perl's Cache::Memcached sends them, so that a pool shared with Perl agrees on every key.
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
    private readonly crc32?: Crc32Buckets,
    protocol: Protocol = 'auto',
    /** The client-flag bits that mark a value as bytes, not text: all of them, unless the flags carry something else too (replicas' stamps). */
    bytesFlags?: number,
  ) {
    for (const server of servers) this.connections.set(server, new Connection(server, timeout, protocol, bytesFlags))
    if (servers.length === 1) this.only = this.connections.get(servers[0]!)
    else if (crc32 === undefined) this.ring = new HashRingClass(servers, 'md5', { compatibility: 'ketama', 'default port': 11211 })
  }

  serverOf(key: string): string {
    return this.on(key).address
  }

  private on(key: string): Connection {
    if (this.only) return this.only
    if (this.crc32 === undefined) return this.connections.get(this.ring!.get(key))!
    // Cache::Memcached skips a dead server by rehashing; all down: the key's own (it fails at once)
    const server = this.crc32.pick(key, (s) => this.connections.get(s)!.down) ?? this.crc32.pick(key, () => false)!
    return this.connections.get(server)!
  }

  /**
   * Sends a command for `key`. With crc32, a call that failed because its server cannot be
   * reached, and that was not sent (or only reads), goes to the server Perl would rehash the key
   * to, as Cache::Memcached's `get_sock` does on a failed connect.
   */
  private send(key: string, command: string | Buffer, kind: ReplyKind, write: boolean): Promise<Answer> {
    // without crc32 (no rehash) the connection's promise is the answer: no async frame per command
    if (this.crc32 === undefined) {
      try {
        return this.on(key).send(command, kind, write)
      } catch (err) {
        return Promise.reject(err)
      }
    }
    return this.sendRehashing(key, command, kind, write)
  }

  private async sendRehashing(key: string, command: string | Buffer, kind: ReplyKind, write: boolean): Promise<Answer> {
    const connection = this.on(key)
    try {
      return await connection.send(command, kind, write)
    } catch (err) {
      if (this.crc32 === undefined || !connection.down || !(err instanceof SessionError) || err.outcomeUnknown) throw err
      const next = this.on(key)
      if (next === connection) throw err
      return next.send(command, kind, write)
    }
  }

  // get and gets: the connection's promise and one `.then` (no async frame: they run on every read)
  get(key: string): Promise<Item | undefined> {
    return this.send(key, `get ${key}\r\n`, 'items', false).then(items)
  }

  gets(key: string): Promise<Item | undefined> {
    return this.send(key, `gets ${key}\r\n`, 'items', false).then(items)
  }

  /** One `get` of several keys, all on the server of the first (a client of one server: that one); the items found, in the order of `keys`. */
  async getMany(keys: readonly string[]): Promise<Item[]> {
    const answer = await this.send(keys[0]!, `get ${keys.join(' ')}\r\n`, 'items', false)
    if (answer.kind !== 'items') throw new Error(`tied-session: internal: an items reply expected, got ${answer.kind}`)
    return answer.items
  }

  /** set, add or replace; the value is sent byte for byte (a string as UTF-8) with its flags. */
  async store(mode: 'set' | 'add' | 'replace', key: string, value: string | Buffer, exptime: number, flags = 0): Promise<Reply> {
    const head = `${mode} ${key} ${integer(flags, 'flags')} ${exptime} ${byteLength(value)}`
    return status(await this.send(key, withData(head, value), 'status', true))
  }

  async cas(key: string, value: string | Buffer, cas: string, exptime: number, flags = 0): Promise<Reply> {
    const head = `cas ${key} ${integer(flags, 'flags')} ${exptime} ${byteLength(value)} ${cas}`
    return status(await this.send(key, withData(head, value), 'status', true))
  }

  async delete(key: string): Promise<Reply> {
    return status(await this.send(key, `delete ${key}\r\n`, 'status', true))
  }

  async touch(key: string, exptime: number): Promise<Reply> {
    return status(await this.send(key, `touch ${key} ${exptime}\r\n`, 'status', true))
  }

  knownMeta(key: string): boolean | undefined {
    return this.crc32 === undefined ? this.on(key).meta : undefined
  }

  /** Asks the server of `key`; with crc32, the server Perl would rehash the key to while that one is down, as {@link send} does. */
  async supportsMeta(key: string): Promise<boolean> {
    const connection = this.on(key)
    try {
      return await connection.supportsMeta()
    } catch (err) {
      if (this.crc32 === undefined || !connection.down) throw err
      const next = this.on(key)
      if (next === connection) throw err
      return next.supportsMeta()
    }
  }

  // the connection's promise and one `.then` (no async frame: a replicated read is one)
  metaGet(key: string, opts: MetaGetOptions = {}): Promise<MetaItem | undefined> {
    // mg return flags: v value, c cas, t seconds left (-1: never), s size, f client flags; T<exptime> touches
    let command = `mg ${key}${opts.value ? ' v' : ''}${opts.cas ? ' c' : ''}${opts.ttl ? ' t' : ''}${opts.size ? ' s' : ''}${opts.flags ? ' f' : ''}`
    try {
      if (opts.touch !== undefined) command += ` T${integer(opts.touch, 'touch')}`
    } catch (err) {
      return Promise.reject(err)
    }
    return this.send(key, `${command}\r\n`, 'meta', opts.touch !== undefined).then((answer) => {
      const reply = meta(answer, this.serverOf(key))
      if (reply.code === 'EN') return undefined
      if (reply.code !== 'HD' && reply.code !== 'VA') throw answered(this.serverOf(key), reply.code, 'mg')
      const found: MetaItem = {}
      const { c, t, s, f } = reply.flags
      if (reply.value !== undefined) found.value = reply.value
      if (c !== undefined) found.cas = c
      if (t !== undefined) found.ttl = Number(t)
      if (s !== undefined) found.size = Number(s)
      if (f !== undefined) found.flags = Number(f)
      return found
    })
  }

  // the connection's promise and one `.then` (no async frame: it runs on every save)
  metaSet(key: string, value: string | Buffer, opts: MetaSetOptions): Promise<MetaSetResult> {
    // A cas that is not a number cannot be the item's: nothing to send.
    if (opts.cas !== undefined && !CAS_UNIQUE.test(opts.cas)) return Promise.resolve({ result: 'exists' })
    // ms <key> <datalen> <flags>*: c returns the new cas, T sets the exptime, F the client flags,
    // C writes only at that cas; the mode token ME is add, MR replace, MS (the default) set.
    let command: string
    try {
      command = `ms ${key} ${byteLength(value)} c T${integer(opts.ttl, 'ttl')}`
      if (opts.flags !== undefined) command += ` F${integer(opts.flags, 'flags')}`
      if (opts.cas !== undefined) command += ` C${opts.cas}`
      if (opts.mode !== 'set') command += opts.mode === 'add' ? ' ME' : opts.mode === 'replace' ? ' MR' : badMode(opts.mode)
    } catch (err) {
      return Promise.reject(err as Error)
    }
    return this.send(key, withData(command, value), 'meta', true).then((answer) => this.metaSetResult(key, answer))
  }

  private metaSetResult(key: string, answer: Answer): MetaSetResult {
    const reply = meta(answer, this.serverOf(key))
    switch (reply.code) {
      case 'HD':
        return reply.flags.c === undefined ? { result: 'stored' } : { result: 'stored', cas: reply.flags.c }
      case 'NS':
        return { result: 'not_stored' }
      case 'EX':
        return { result: 'exists' }
      case 'NF':
        return { result: 'not_found' }
      default:
        throw answered(this.serverOf(key), reply.code, 'ms')
    }
  }

  async metaDelete(key: string, opts: { cas?: string } = {}): Promise<'deleted' | 'not_found' | 'exists'> {
    if (opts.cas !== undefined && !CAS_UNIQUE.test(opts.cas)) return 'exists'
    const command = `md ${key}${opts.cas === undefined ? '' : ` C${opts.cas}`}\r\n`
    const reply = meta(await this.send(key, command, 'meta', true), this.serverOf(key))
    if (reply.code === 'HD') return 'deleted'
    if (reply.code === 'NF') return 'not_found'
    if (reply.code === 'EX') return 'exists'
    throw answered(this.serverOf(key), reply.code, 'md')
  }

  /** Fails the calls in flight and every later one with `error`; closes the sockets. */
  close(error: SessionError): void {
    for (const connection of this.connections.values()) connection.close(error)
  }
}

const CRLF = Buffer.from('\r\n')

/** A value's length in bytes as sent (a string as UTF-8). */
const byteLength = (value: string | Buffer): number => (typeof value === 'string' ? utf8Length(value) : value.length)

/** A command line and its data block: one string for text, bytes for a Buffer (never decoded). */
function withData(head: string, value: string | Buffer): string | Buffer {
  if (typeof value === 'string') return `${head}\r\n${value}\r\n`
  return Buffer.concat([Buffer.from(`${head}\r\n`, 'latin1'), value, CRLF])
}

/** The first item of a get (the store gets one key at a time), or undefined for a miss. */
function items(answer: Answer): Item | undefined {
  if (answer.kind !== 'items') throw new Error(`tied-session: internal: an items reply expected, got ${answer.kind}`)
  return answer.items[0]
}

function status(answer: Answer): Reply {
  if (answer.kind !== 'status') throw new Error(`tied-session: internal: a status reply expected, got ${answer.kind}`)
  return answer.status
}

function meta(answer: Answer, server: string): Extract<Answer, { kind: 'meta' }> {
  if (answer.kind !== 'meta') throw answered(server, answer.kind, 'a meta command')
  return answer
}

const answered = (server: string, what: string, command: string) =>
  new SessionError('ERR_STORE_UNAVAILABLE', `memcached ${server} answered ${what} to ${command}, which it never does; is this memcached?`)

function integer(value: number, name: string): number {
  if (!Number.isSafeInteger(value)) throw new TypeError(`tied-session: meta ${name} must be a whole number, got ${String(value)}`)
  return value
}

function badMode(mode: never): never {
  throw new TypeError(`tied-session: metaSet mode must be set, add or replace, got ${String(mode)}`)
}
