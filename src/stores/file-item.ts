/** One key's file in the file store: reading it, and writing it in place or anew (its bytes: file-format.ts). */
import fs, { constants, promises as fsp } from 'node:fs'
import path from 'node:path'
import { SessionError, isSessionError } from '../errors.js'
import {
  HEAD,
  corrupt,
  decodeSlot,
  encode,
  isSlotted,
  itemOf,
  newerFirst,
  parseLegacy,
  recordLength,
  slotSizeFor,
  type Found,
  type Item,
} from './file-format.js'
import { randomHex } from './file-keys.js'

export type { Item } from './file-format.js'

/**
 * How a key's file is opened. O_NOFOLLOW: a symbolic link planted where the file should be is
 * never read or written through (open fails with ELOOP; EMLINK on FreeBSD). O_NONBLOCK: a FIFO
 * planted there cannot hang the open (it means nothing for a regular file). Windows has neither
 * flag: there the path is looked at with lstat first.
 */
const NO_FOLLOW = constants.O_NOFOLLOW as number | undefined
const SAFE_FLAGS = (NO_FOLLOW ?? 0) | ((constants.O_NONBLOCK as number | undefined) ?? 0)

/** ERR_CORRUPT for a path that holds something other than a regular file (a link, a directory, a FIFO). */
function notAFile(key: string, file: string, what: string): SessionError {
  const message = `the file of key "${key}" (${file}) is ${what}, not a tied-session file, and is never followed or read; delete the key`
  return new SessionError('ERR_CORRUPT', message)
}

/** Files up to this size are read whole, in one call; larger ones slot by slot. */
const READ_WHOLE = 64 * 1024
/**
 * Reads of a file whose two records were both being written over while it was read. Each retry
 * needs two more writes of the key to land inside one read of a few KB, so a second try is rare
 * and a fifth unheard of; a file still unreadable after these is damaged.
 */
const TORN_TRIES = 20

/** `length` bytes of `fd` from `position` (fewer at the end of the file). */
function readAt(fd: number, length: number, position: number): Buffer {
  const buffer = Buffer.allocUnsafe(length)
  let got = 0
  for (let n = 1; n > 0 && got < length; got += n) n = fs.readSync(fd, buffer, got, length - got, position + got)
  return got === length ? buffer : buffer.subarray(0, got)
}

/** What a key's open file holds: its current record and slot size, or an item of the format before this one. */
type Contents = { found: Found; slotSize: number; legacy?: undefined } | { found?: undefined; legacy: Item }

/** Where a file's first READ_WHOLE bytes are read to; what is kept of them is copied out (see readStart). */
const SCRATCH = Buffer.allocUnsafe(READ_WHOLE)

/**
 * The first bytes of the open file `fd`, up to READ_WHOLE, and its size: a file shorter than that
 * is read whole in one call with no fstat (its size is what the read returned), a longer one is
 * fstat'ed. A directory or FIFO (which a link-free open can still find there) fails the read or
 * reads as empty: not a tied-session file.
 */
function readStart(key: string, file: string, fd: number): { first: Buffer; size: number } {
  let got: number
  try {
    // a read of a regular file returns less than asked only at its end: a shorter file is read whole
    got = fs.readSync(fd, SCRATCH, 0, READ_WHOLE, 0)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'EISDIR' || code === 'EAGAIN') throw notAFile(key, file, 'not a regular file')
    throw err
  }
  const first = Buffer.from(SCRATCH.subarray(0, got)) // a copy: the caller keeps it, and decoded values are views of it
  return { first, size: got < READ_WHOLE ? got : fs.fstatSync(fd).size }
}

/**
 * The {@link Contents} of `key`'s open file `fd`; ERR_CORRUPT if it has none. A file up to
 * READ_WHOLE is read in one call; a larger one by its two heads, then the newer record.
 */
function contents(key: string, file: string, fd: number): Contents {
  for (let attempt = 0; attempt < TORN_TRIES; attempt++) {
    const { first, size } = readStart(key, file, fd)
    if (!isSlotted(first)) {
      if (first[0] !== 0x7b) break // '{': the older format's header
      const text = size <= first.length ? first : readAt(fd, size, 0)
      return { legacy: parseLegacy(key, file, text.toString('utf8')) }
    }
    const slotSize = size / 2
    if (!Number.isInteger(slotSize) || slotSize < HEAD) break
    const whole = size <= first.length
    const heads = [first.subarray(0, slotSize), whole ? first.subarray(slotSize) : readAt(fd, HEAD, slotSize)]
    for (const slot of newerFirst(heads[0]!, heads[1]!)) {
      const length = recordLength(heads[slot]!)
      if (length === undefined || length > slotSize) continue
      const found = decodeSlot(whole ? heads[slot]! : readAt(fd, length, slot * slotSize), slot)
      if (found !== undefined) return { found, slotSize }
    }
  }
  throw corrupt(key, file)
}

/**
 * Opens `file` with `flags` (plus SAFE_FLAGS): its fd, or undefined if there is none. What is
 * there is never followed if it is a link; anything else that is not a regular file fails the
 * first read (see readStart).
 */
function openFile(key: string, file: string, flags: number): number | undefined {
  try {
    if (NO_FOLLOW === undefined && fs.lstatSync(file).isSymbolicLink()) throw notAFile(key, file, 'a symbolic link')
    return fs.openSync(file, flags | SAFE_FLAGS)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'ELOOP' || code === 'EMLINK') throw notAFile(key, file, 'a symbolic link')
    if (code === 'EISDIR') throw notAFile(key, file, 'not a regular file') // opened for writing
    throw err
  }
}

/**
 * The {@link Item} in `key`'s `file`, or undefined if there is no such file. A link or anything
 * but a regular file there is ERR_CORRUPT and is not followed: another user's or a foreign file
 * is never served as a session. (Writes never go through a link either: see openItem, writeTemp.)
 *
 * Synchronous, as every call of the file store on a key's file: a session file is a few KB in
 * the page cache, and a synchronous call costs a few microseconds where a call through libuv's
 * thread pool costs 50-200 (measured on this 2-core VM); a write can then hold its lock without
 * an await (see file-mutex.ts).
 */
export function readItem(key: string, file: string): Item | undefined {
  const fd = openFile(key, file, constants.O_RDONLY)
  if (fd === undefined) return undefined
  try {
    const { found, legacy } = contents(key, file, fd)
    return found === undefined ? legacy : itemOf(found)
  } finally {
    fs.closeSync(fd)
  }
}

/** A key's file opened for a write under its write lock: what it holds now; close() it. */
export type OpenItem = Contents & { fd: number; close(): void }

/** The item that an open file holds. */
export const itemIn = (open: OpenItem): Item => (open.found === undefined ? open.legacy : itemOf(open.found))

/**
 * Opens `key`'s `file` for reading and writing (a write that holds its write lock), or undefined
 * if there is none. A link, a non-file or a corrupt file is ERR_CORRUPT; with `replacing` (a
 * `set`, which replaces whatever is there) it is undefined instead, so the write makes a new file.
 */
export function openItem(key: string, file: string, replacing: boolean): OpenItem | undefined {
  let fd: number | undefined
  try {
    fd = openFile(key, file, constants.O_RDWR)
    if (fd === undefined) return undefined
    const opened = fd
    return { ...contents(key, file, opened), fd: opened, close: () => fs.closeSync(opened) }
  } catch (err) {
    if (fd !== undefined) fs.closeSync(fd)
    if (replacing && isSessionError(err, 'ERR_CORRUPT')) return undefined
    throw err
  }
}

/** A new temp file's path in `directory` (`.<16 hex>.tmp`: keyOf() ignores it, deleteExpired() sweeps it). */
const tempName = (directory: string) => path.join(directory, `.${randomHex()}.tmp`)

/** A new file's bytes for `item`: its record in slot 0 (slot 1, empty, is the file's size up to twice the slot's). */
function firstRecord(item: Item): { record: Buffer; size: number } {
  const record = encode(item, 1)
  return { record, size: 2 * slotSizeFor(record.length) }
}

/**
 * Writes `item` to a new temp file in `directory` and returns its path; with `durable`, the file
 * is fsynced before this resolves. Nothing is written through a link: the temp file is made with
 * O_CREAT | O_EXCL ('wx'), which fails on any existing path, a link included.
 */
export function writeTemp(directory: string, item: Item): string
export function writeTemp(directory: string, item: Item, durable: true): Promise<string>
export function writeTemp(directory: string, item: Item, durable?: true): string | Promise<string> {
  const tmp = tempName(directory)
  const { record, size } = firstRecord(item)
  if (durable) {
    return (async () => {
      const handle = await fsp.open(tmp, 'wx', 0o600)
      try {
        await handle.writeFile(record)
        await handle.truncate(size)
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
    fs.writeFileSync(fd, record)
    fs.ftruncateSync(fd, size)
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

/**
 * Stores `item` as the key's new version, holding its write lock, without fsync. Into the open
 * file `open`, in place, when it is in this format and the record fits its slot: the record goes
 * into the slot that does not hold the current one, so a reader meanwhile reads the current one
 * whole, and a writer killed mid-write leaves it current (the half-written record fails its crc32).
 * Otherwise (no file, the older format, a record that outgrew its slot or shrank to a quarter of
 * it) into a new file that replaces the old one (putItem). `held()` is called just before the
 * write that commits.
 *
 * In place, because replacing a file costs far more on a journaling file system: on this VM's
 * ext4, create + write + rename over the old file took 130-900 µs (ext4 starts writing out a file
 * that a rename puts over another), a write in place 5-10 µs.
 */
export function storeItem(directory: string, file: string, open: OpenItem | undefined, item: Item, held: () => void): void {
  if (open?.found !== undefined) {
    const { found } = open
    const record = encode(item, found.seq + 1)
    if (record.length <= open.slotSize && slotSizeFor(record.length) * 4 > open.slotSize) {
      held()
      const position = (1 - found.slot) * open.slotSize
      for (let done = 0; done < record.length;) done += fs.writeSync(open.fd, record, done, record.length - done, position + done)
      return
    }
  }
  putItem(directory, file, item, held)
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
