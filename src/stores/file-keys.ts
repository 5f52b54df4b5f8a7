/** One key's file in the file store: its name (key <-> file name), and the random names and versions it is written with. */
import { randomBytes } from 'node:crypto'
import { SessionError } from '../errors.js'

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
