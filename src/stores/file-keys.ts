/** One key's file in the file store: its name (key <-> file name), its format, reading and replacing it. */
import { randomBytes } from 'node:crypto'
import { constants, promises as fs } from 'node:fs'
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
 * is never served as a session. (Writes never go through a link either: see putItem.)
 */
export async function readItem(key: string, file: string): Promise<Item | undefined> {
  let handle: fs.FileHandle
  try {
    if (NO_FOLLOW === undefined && (await fs.lstat(file)).isSymbolicLink()) throw notAFile(key, file, 'a symbolic link')
    handle = await fs.open(file, READ_FLAGS)
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return undefined
    if (code === 'ELOOP' || code === 'EMLINK') throw notAFile(key, file, 'a symbolic link')
    throw err
  }
  try {
    if (!(await handle.stat()).isFile()) throw notAFile(key, file, 'not a regular file')
    return parse(key, file, await handle.readFile('utf8'))
  } finally {
    await handle.close()
  }
}

/**
 * Writes `item` to a temp file, fsyncs it and renames it over `file`: rename is atomic within
 * one file system, so a reader sees the old file or the new one, never half of one. Nothing is
 * written through a link: the temp file is made with O_CREAT | O_EXCL ('wx'), which fails on any
 * existing path, a link included, and rename replaces a link at `file` itself, never its target
 * (the callers read `file` first, except a `set`, which replaces whatever is there). `held()`,
 * called just before the rename, throws if the write lock of `file` was lost meanwhile.
 */
export async function putItem(directory: string, file: string, item: Item, held: () => void): Promise<void> {
  const tmp = path.join(directory, `.${randomBytes(8).toString('hex')}.tmp`) // keyOf() ignores it
  try {
    const handle = await fs.open(tmp, 'wx', 0o600)
    try {
      const binary = typeof item.value !== 'string'
      const head = { v: item.version, e: item.expires, ...(binary ? { b: 1 } : {}), ...(item.flags ? { f: item.flags } : {}) }
      await handle.writeFile(JSON.stringify(head) + '\n' + (binary ? item.value.toString('base64') : item.value))
      await handle.sync()
    } finally {
      await handle.close()
    }
    held()
    await fs.rename(tmp, file)
  } catch (err) {
    await fs.rm(tmp, { force: true }).catch(() => {})
    throw err
  }
}
