/**
 * The memcached reply parser: Buffer chunks in, replies out. No sockets, no timers: the wire
 * client, the store's key listing and the CLI's raw commands all read replies through it, and it
 * is tested byte by byte without a network (test/stores/memcached-parser.test.ts).
 *
 * memcached's replies do not say which command they answer, so the caller tells the parser the
 * kind of each reply it waits for, in the order it sent the commands ({@link ReplyParser.expect}).
 */
import { isUtf8 } from 'node:buffer'

/**
 * An item as read by get/gets: its value, its flags, and for `gets` its cas unique. The value is
 * a string only when it is flags-0 text that is valid UTF-8 (decoding it is then lossless);
 * anything else (Perl's Storable, gzip, Latin-1 bytes) stays the bytes that were stored.
 */
export interface Item {
  value: string | Buffer
  flags: number
  cas: string | undefined
}

/** The one-line replies of the text storage, delete and touch commands. */
export type Status = 'STORED' | 'NOT_STORED' | 'EXISTS' | 'NOT_FOUND' | 'DELETED' | 'TOUCHED'

/** The status codes of meta replies: HD (done), VA (value), EN (miss), NS (not stored), EX (cas mismatch), NF (not found), MN (mn answered). */
export type MetaCode = 'HD' | 'VA' | 'EN' | 'NS' | 'EX' | 'NF' | 'MN'

/** One live key of a `lru_crawler metadump` listing and when it expires (Unix seconds, -1 = never). */
export interface DumpEntry {
  key: string
  exp: number
}

/**
 * What a command's reply is made of:
 * - `items`: get/gets, VALUE lines with their data, then END;
 * - `status`: set/add/replace/cas/delete/touch, one {@link Status} line;
 * - `meta`: mg/ms/md/mn, one meta line (VA with its data);
 * - `probe`: `mn` sent to learn whether the server speaks meta: MN, or the ERROR of a server that does not;
 * - `dump`: `lru_crawler metadump`, `key=` lines then END, or a refusal line (BUSY, BADCLASS, ERROR);
 * - `stats`: `stats`, STAT lines then END.
 */
export type ReplyKind = 'items' | 'status' | 'meta' | 'probe' | 'dump' | 'stats'

/** A parsed reply. `server_error`: the server refused this one command and stays in step. `out_of_step`: nothing after it can be trusted. */
export type ParsedReply =
  | { kind: 'items'; items: Item[] }
  | { kind: 'status'; status: Status }
  | { kind: 'meta'; code: MetaCode; flags: Record<string, string>; value: string | Buffer | undefined }
  | { kind: 'dump'; entries: DumpEntry[] }
  | { kind: 'stats'; stats: Record<string, string> }
  | { kind: 'refused'; line: string }
  | { kind: 'server_error'; line: string }
  | { kind: 'out_of_step'; line: string }

const LF = 0x0a
const CR = 0x0d
const STATUSES = new Set<string>(['STORED', 'NOT_STORED', 'EXISTS', 'NOT_FOUND', 'DELETED', 'TOUCHED'])
const META_CODES = new Set<string>(['HD', 'EN', 'NS', 'EX', 'NF', 'MN'])
/** Lines with which `lru_crawler metadump` declines: BUSY (another crawl runs), BADCLASS (an argument it does not know), ERROR/CLIENT_ERROR (-X, no crawler). */
const DUMP_REFUSAL = /^(BUSY|BADCLASS|ERROR|CLIENT_ERROR)( |$)/
/** A metadump line: "key=<url-encoded> exp=<Unix time, -1 = never> la=... cas=... ..." */
const DUMP_LINE = /^key=(\S+) exp=(-?\d+)/

/**
 * Parses the replies of one connection. Call {@link expect} once per command sent, in order;
 * {@link push} each chunk received and handle the replies it completes. After an `out_of_step`
 * reply the parser is spent: drop the connection and {@link reset}.
 */
export class ReplyParser {
  private kinds: ReplyKind[] = []
  private next = 0
  /** Bytes received and not parsed yet, and how many are needed before parsing again (a value's size). */
  private chunks: Buffer[] = []
  private received = 0
  private needed = 0
  /** The reply being read: items of a get, entries of a dump, stats so far. */
  private items: Item[] = []
  private entries: DumpEntry[] = []
  private stats: Record<string, string> = {}

  /**
   * `bytesFlags`: the client-flag bits that mark a value as bytes (another client's format); a
   * value with none of them set is text when it is valid UTF-8. Default: every bit.
   */
  constructor(private readonly bytesFlags = 0xffffffff) {}
  private spent = false

  /** Replies waited for and not complete yet. */
  get waiting(): number {
    return this.kinds.length - this.next
  }

  /** The next reply (after those already expected) answers a command of this kind. */
  expect(kind: ReplyKind): void {
    this.kinds.push(kind)
  }

  /** Forgets every expected reply and every byte received: for a new connection. */
  reset(): void {
    this.kinds = []
    this.next = 0
    this.chunks = []
    this.received = this.needed = 0
    this.items = []
    this.entries = []
    this.stats = {}
    this.spent = false
  }

  /** Takes one chunk; returns the replies it completes, oldest first (bytes nobody waits for are `out_of_step`). */
  push(chunk: Buffer): ParsedReply[] {
    if (this.spent) return []
    this.chunks.push(chunk)
    this.received += chunk.length
    if (this.received < this.needed) return [] // the rest of a value is still to come
    const buf = this.chunks.length === 1 ? chunk : Buffer.concat(this.chunks, this.received)
    const replies: ParsedReply[] = []
    let at = 0
    this.needed = 0
    while (at < buf.length) {
      const kind = this.kinds[this.next]
      const eol = buf.indexOf(LF, at)
      if (kind === undefined) {
        // a byte that answers nothing we sent
        const line = buf.toString('latin1', at, eol < 0 ? Math.min(buf.length, at + 200) : eol).replace(/\r$/, '')
        return this.outOfStep(replies, line)
      }
      if (eol < 0) break
      const line = buf.toString('latin1', at, buf[eol - 1] === CR ? eol - 1 : eol)
      // VALUE <key> <flags> <bytes> [<cas>] and VA <bytes> <flags>*: the data follows, framed by its byte count
      const header =
        kind === 'items' ? /^VALUE \S+ (\d+) (\d+)(?: (\d+))?$/.exec(line) : kind === 'meta' ? /^VA (\d+)(.*)$/.exec(line) : null
      if (header) {
        const start = eol + 1
        const end = start + Number(kind === 'items' ? header[2] : header[1])
        if (buf.length < end + 2) {
          this.needed = end + 2 - at
          break
        }
        if (buf[end] !== CR || buf[end + 1] !== LF) return this.outOfStep(replies, line) // a wrong byte count
        at = end + 2
        if (kind === 'items') {
          const flags = Number(header[1])
          this.items.push({ value: valueOf(buf, start, end, flags & this.bytesFlags), flags, cas: header[3] })
        } else {
          const flags = metaFlags(header[2]!)
          this.done(replies, {
            kind: 'meta',
            code: 'VA',
            flags,
            value: valueOf(buf, start, end, flags.f === undefined ? 0 : Number(flags.f) & this.bytesFlags),
          })
        }
        continue
      }
      at = eol + 1
      const reply = this.line(kind, line)
      if (reply === undefined) continue // a line of a reply still being read
      if (reply.kind === 'out_of_step') return this.outOfStep(replies, line)
      this.done(replies, reply)
    }
    this.received = buf.length - at
    this.chunks = this.received === 0 ? [] : [buf.subarray(at)]
    if (this.next >= 1024 && this.next === this.kinds.length) {
      this.kinds = []
      this.next = 0
    } else if (this.next >= 1024) {
      // under steady load the queue may never empty: drop the answered kinds now and then
      this.kinds = this.kinds.slice(this.next)
      this.next = 0
    }
    return replies
  }

  /** One whole line (no data block) of a reply of `kind`: the reply it ends, or undefined when more lines follow. */
  private line(kind: ReplyKind, line: string): ParsedReply | undefined {
    // SERVER_ERROR: the server refused this command (out of memory, item too large) and stays in step.
    if (line.startsWith('SERVER_ERROR')) return { kind: 'server_error', line }
    switch (kind) {
      case 'items':
        if (line !== 'END') break
        return { kind: 'items', items: swap(this.items, (fresh) => (this.items = fresh)) }
      case 'status':
        if (STATUSES.has(line)) return { kind: 'status', status: line as Status }
        break
      case 'probe':
      case 'meta': {
        // memcached before 1.6 answers a bare ERROR to mn (one line: still in step); "ERROR <words>" is something else
        if (kind === 'probe' && (line === 'ERROR' || line.startsWith('CLIENT_ERROR'))) return { kind: 'refused', line }
        // "<code> <flags>*": sliced, not split and joined again (this runs for every meta reply)
        const space = line.indexOf(' ')
        const code = space < 0 ? line : line.slice(0, space)
        if (META_CODES.has(code))
          return { kind: 'meta', code: code as MetaCode, flags: metaFlags(space < 0 ? '' : line.slice(space + 1)), value: undefined }
        break
      }
      case 'dump': {
        if (line === 'END') return { kind: 'dump', entries: swap(this.entries, (fresh) => (this.entries = fresh)) }
        if (DUMP_REFUSAL.test(line) && this.entries.length === 0) return { kind: 'refused', line }
        const match = DUMP_LINE.exec(line)
        const key = match && decodeKey(match[1]!)
        if (key === undefined || key === null) break
        this.entries.push({ key, exp: Number(match![2]) })
        return undefined
      }
      case 'stats': {
        if (line === 'END') {
          const stats = this.stats
          this.stats = {}
          return { kind: 'stats', stats }
        }
        const [word, name, ...value] = line.split(' ')
        if (word !== 'STAT' || name === undefined) break
        this.stats[name] = value.join(' ')
        return undefined
      }
    }
    return { kind: 'out_of_step', line }
  }

  private done(replies: ParsedReply[], reply: ParsedReply): void {
    this.next++
    replies.push(reply)
  }

  /** A reply that fits no expected one (ERROR, CLIENT_ERROR, garbage): reported once, and the parser is spent. */
  private outOfStep(replies: ParsedReply[], line: string): ParsedReply[] {
    this.spent = true
    this.chunks = []
    this.received = 0
    replies.push({ kind: 'out_of_step', line: line.slice(0, 200) })
    return replies
  }
}

/** Returns `list` after giving its holder a new empty one. */
function swap<T>(list: T[], replace: (fresh: T[]) => void): T[] {
  replace([])
  return list
}

/**
 * A value's bytes as the caller gets them: text when they are flags-0 valid UTF-8 (so decoding is
 * lossless), else a copy of the bytes. Flags other than 0 are another client's format (Perl's
 * Cache::Memcached: bit 0 Storable, bit 1 gzip), whose bytes a UTF-8 decode would damage; `flags`
 * here are only the bits that say so (see ReplyParser's `bytesFlags`).
 */
function valueOf(buf: Buffer, start: number, end: number, flags: number): string | Buffer {
  if (flags === 0) {
    // The decoder writes U+FFFD for every byte sequence that is not UTF-8: a text without it was
    // valid, and only one with it (invalid, or holding a real U+FFFD) needs the bytes checked.
    // Half the time of checking every value's bytes first (a 1 KB value: 540 -> 260 ns).
    const text = buf.toString('utf8', start, end)
    if (!text.includes('\uFFFD') || isUtf8(buf.subarray(start, end))) return text
  }
  return Buffer.from(buf.subarray(start, end))
}

/** Meta return flags (" c12 t60 s2 f0"): flag letter -> its token (`b` alone -> ''). */
function metaFlags(text: string): Record<string, string> {
  // a scan, not split(' '): this runs for every meta reply, and the array of tokens cost half its time
  const flags: Record<string, string> = {}
  for (let at = 0; at < text.length;) {
    if (text.charCodeAt(at) === 0x20) {
      at++
      continue
    }
    const end = text.indexOf(' ', at)
    const to = end < 0 ? text.length : end
    flags[text[at]!] = text.slice(at + 1, to)
    at = to + 1
  }
  return flags
}

/** metadump url-encodes keys; undefined when that is not what came. */
function decodeKey(encoded: string): string | undefined {
  try {
    return decodeURIComponent(encoded)
  } catch {
    return undefined
  }
}
