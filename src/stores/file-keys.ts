/** One key's file in the file store: its name (key <-> file name), its format, reading and replacing it. */
import { randomBytes } from 'node:crypto'
import fs, { constants, promises as fsp } from 'node:fs'
import path from 'node:path'
import { SessionError } from '../errors.js'

/**
 * One key's file: a JSON header line `{"v":version,"e":expires}`, then the value. A value of bytes
 * (a Buffer) is written as base64 with `"b":1` in the header, and flags other than 0 as `"f"`.
 */
export interface Item {
  version: string
  /** ms since the epoch; 0 = never */
  expires: number
  value: string | Buffer
  /** Client flags kept with the value (absent: 0). */
  flags?: number
}

const SUFFIX = '.session'
const PLAIN = /^[A-Za-z0-9_-]+$/
/** Most file systems allow 255 bytes per name; lock directories add `.lock` or `-lock`. */
const MAX_NAME_BYTES = 240

/** The file name of `key`: plain keys as they are, any other as `~` + base64url, never a path. */
export function fileName(key: string): string {
  let stem = key
  if (!PLAIN.test(key)) {
    stem = '~' + Buffer.from(key, 'utf8').toString('base64url')
    if (keyOf(stem + SUFFIX) !== key) {
      throw new SessionError('ERR_INVALID_ID', `key ${JSON.stringify(key)} is not well-formed Unicode; use another key`)
    }
  }
  const name = stem + SUFFIX
  if (Buffer.byteLength(name) > MAX_NAME_BYTES) {
    const message = `key "${key.slice(0, 40)}..." is too long for a file name (over ${MAX_NAME_BYTES} bytes); use a shorter key`
    throw new SessionError('ERR_INVALID_ID', message)
  }
  return name
}

/** The key a file name stands for, or undefined for temp files, lock directories and strangers. */
export function keyOf(name: string): string | undefined {
  if (!name.endsWith(SUFFIX)) return undefined
  const stem = name.slice(0, -SUFFIX.length)
  if (PLAIN.test(stem)) return stem
  if (!stem.startsWith('~')) return undefined
  const key = Buffer.from(stem.slice(1), 'base64url').toString('utf8')
  // only the one spelling fileName() makes, so a key is never listed twice
  return !PLAIN.test(key) && '~' + Buffer.from(key, 'utf8').toString('base64url') === stem ? key : undefined
}

type Head = { v?: unknown; e?: unknown; b?: unknown; f?: unknown }

/** The {@link Item} in the text of `key`'s file; ERR_CORRUPT, naming the key and `file`, if it has no header. */
function parse(key: string, file: string, text: string): Item {
  const nl = text.indexOf('\n')
  let head: Head | null = null
  try {
    if (nl >= 0) head = JSON.parse(text.slice(0, nl)) as Head | null
  } catch {
    // not our header: reported as ERR_CORRUPT below
  }
  if (typeof head?.v !== 'string' || typeof head.e !== 'number') {
    throw new SessionError('ERR_CORRUPT', `the file of key "${key}" (${file}) is not a tied-session file; delete the key`)
  }
  const body = text.slice(nl + 1)
  const item: Item = { version: head.v, expires: head.e, value: head.b === 1 ? Buffer.from(body, 'base64') : body }
  if (typeof head.f === 'number' && head.f !== 0) item.flags = head.f
  return item
}

/**
 * How a key's file is opened for reading. O_NOFOLLOW: a symbolic link planted where the file
 * should be is never read through (open fails with ELOOP; EMLINK on FreeBSD). O_NONBLOCK: a FIFO
 * planted there cannot hang the open (it means nothing for a regular file). Windows has neither
 * flag: there readItem() looks at the path with lstat first.
 */
const NO_FOLLOW = constants.O_NOFOLLOW as number | undefined
const READ_FLAGS = constants.O_RDONLY | (NO_FOLLOW ?? 0) | ((constants.O_NONBLOCK as number | undefined) ?? 0)

/** ERR_CORRUPT for a path that holds something other than a regular file (a link, a directory, a FIFO). */
function notAFile(key: string, file: string, what: string): SessionError {
  const message = `the file of key "${key}" (${file}) is ${what}, not a tied-session file, and is never followed or read; delete the key`
  return new SessionError('ERR_CORRUPT', message)
}

/**
 * The {@link Item} in `key`'s `file`, or undefined if there is no such file. A link or anything
 * but a regular file there is ERR_CORRUPT and is not followed: another user's or a foreign file
 * is never served as a session. (Writes never go through a link either: see writeTemp.)
 *
 * Synchronous, as every call of the file store on a key's file: a session file is a few KB in
 * the page cache, and a synchronous call costs a few microseconds where a call through libuv's
 * thread pool costs 50-200 (measured on this 2-core VM); a write can then hold its lock without
 * an await (see file-mutex.ts).
 */
export function readItem(key: string, file: string): Item | undefined {
  let fd: number
  try {
    if (NO_FOLLOW === undefined && fs.lstatSync(file).isSymbolicLink()) throw notAFile(key, file, 'a symbolic link')
    fd = fs.openSync(file, READ_FLAGS)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'ELOOP' || code === 'EMLINK') throw notAFile(key, file, 'a symbolic link')
    throw err
  }
  try {
    const stat = fs.fstatSync(fd)
    if (!stat.isFile()) throw notAFile(key, file, 'not a regular file')
    // a key's file is never changed in place (only replaced), so its size holds while we read
    const buffer = Buffer.allocUnsafe(stat.size)
    let length = 0
    for (let n = 1; n > 0 && length < buffer.length; length += n) n = fs.readSync(fd, buffer, length, buffer.length - length, length)
    return parse(key, file, buffer.toString('utf8', 0, length))
  } finally {
    fs.closeSync(fd)
  }
}

/** The text of `item`'s file. */
/** The file's text: a JSON header line (version, expiry; `b`: the value is bytes, in base64; `f`: its flags), then the value. */
function textOf(item: Item): string {
  const binary = typeof item.value !== 'string'
  const head = { v: item.version, e: item.expires, ...(binary ? { b: 1 } : {}), ...(item.flags ? { f: item.flags } : {}) }
  return JSON.stringify(head) + '\n' + (binary ? (item.value as Buffer).toString('base64') : (item.value as string))
}

/** Random bytes drawn 4 KB at a time: a randomBytes() call per write and per temp name measured about 9 µs each here. */
let pool = Buffer.alloc(0)
let drawn = 0

/** 16 random hex chars (64 bits): a version, or a temp file's name. */
export function randomHex(): string {
  if (drawn + 8 > pool.length) {
    pool = randomBytes(4096)
    drawn = 0
  }
  return pool.toString('hex', drawn, (drawn += 8))
}

/** A new temp file's path in `directory` (`.<16 hex>.tmp`: keyOf() ignores it, deleteExpired() sweeps it). */
const tempName = (directory: string) => path.join(directory, `.${randomHex()}.tmp`)

/**
 * Writes `item` to a new temp file in `directory` and returns its path; with `durable`, the file
 * is fsynced before this resolves. Nothing is written through a link: the temp file is made with
 * O_CREAT | O_EXCL ('wx'), which fails on any existing path, a link included.
 */
export function writeTemp(directory: string, item: Item): string
export function writeTemp(directory: string, item: Item, durable: true): Promise<string>
export function writeTemp(directory: string, item: Item, durable?: true): string | Promise<string> {
  const tmp = tempName(directory)
  if (durable) {
    return (async () => {
      const handle = await fsp.open(tmp, 'wx', 0o600)
      try {
        await handle.writeFile(textOf(item))
        await handle.sync()
      } catch (err) {
        await handle.close().catch(() => {}) // the write's error is the one to report
        await fsp.rm(tmp, { force: true })
        throw err
      }
      await handle.close()
      return tmp
    })()
  }
  const fd = fs.openSync(tmp, 'wx', 0o600)
  let written = false
  try {
    fs.writeFileSync(fd, textOf(item))
    written = true
  } finally {
    fs.closeSync(fd)
    if (!written) fs.rmSync(tmp, { force: true })
  }
  return tmp
}

/**
 * Renames the temp file `tmp` over `file`: rename is atomic within one file system, so a reader
 * sees the old file or the new one, never half of one, and a writer killed at any point leaves
 * one of them whole. rename replaces a link at `file` itself, never its target (the callers read
 * `file` first, except a `set`, which replaces whatever is there). `held()`, called just before
 * the rename, throws if the write lock of `file` was lost meanwhile; on any failure `tmp` is removed.
 */
export function commitTemp(tmp: string, file: string, held: () => void): void {
  try {
    held()
    fs.renameSync(tmp, file)
  } catch (err) {
    fs.rmSync(tmp, { force: true })
    throw err
  }
}

/** Writes `item` over `file` at once (writeTemp + commitTemp), without fsync. */
export function putItem(directory: string, file: string, item: Item, held: () => void): void {
  commitTemp(writeTemp(directory, item), file, held)
}

/** fsyncs `directory`, so that the renames made in it survive a power loss (a durable store's writes). */
export async function syncDirectory(directory: string): Promise<void> {
  const handle = await fsp.open(directory, 'r')
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
