import fsSync, { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { SessionError, isSessionError } from '../errors.js'
import { expiryTime, type Entry, type LockOptions, type Store, type Value, type WriteOptions, type WriteResult } from './store.js'
import { fileName, keyOf, randomHex } from './file-keys.js'
import { commitTemp, itemIn, openItem, readItem, storeItem, syncDirectory, writeTemp, type Item } from './file-item.js'
import { takeSessionLock } from './file-lock.js'
import { HOLDER_NAME, leftHolder, withWriteLock } from './file-mutex.js'
import { pollLock } from './lock.js'

/** Options of {@link fileStore}. */
export interface FileStoreOptions {
  /**
   * The directory that holds one file per key; created (mode 0700) on first use.
   * @default path.join(os.tmpdir(), 'tied-session-' + uid), one folder per OS user
   */
  directory?: string
  /** Largest value accepted, in bytes (UTF-8). @default 1000000 */
  maxValueBytes?: number
  /**
   * Whether each write is fsynced before it resolves, so that it survives a power loss or an OS
   * crash: a durable write goes into a new file, fsynced, renamed over the old one, and then the
   * directory is fsynced. Without it, a write goes in place and resolves once it is in the
   * kernel's page cache: it survives the process's crash or kill -9, not a power loss, as with
   * memcached and Cache::FastMmap. About 1 ms more per write on a VM's disk.
   * @default false
   */
  durable?: boolean
}

/** The file store: a {@link Store} that also names its directory and sweeps expired files. */
export type FileStore = Store &
  Required<Pick<Store, 'lock'>> & {
    /** The absolute directory the store writes to. */
    readonly directory: string
    /**
     * Removes the files of expired keys; resolves to how many it removed. `onProgress` is called
     * before each file and at the end, with how many files were looked at and how many there are.
     * Also removes temp files and lock directories that processes which died left behind
     * (untouched for 10 minutes), and the write-lock holder files of processes that are gone.
     */
    deleteExpired(options?: { onProgress?: (done: number, total: number) => void }): Promise<number>
    /** The live keys that start with `prefix`, in no particular order; the file store always lists. */
    keys(prefix?: string): AsyncIterable<string>
  }

/**
 * A temp file or lock directory untouched this long was left by a process that died mid-write or
 * while holding a lock (live holders refresh their locks every 1-2 s; a write takes milliseconds):
 * deleteExpired() removes it.
 */
const LEFTOVER_MS = 10 * 60_000
/** The names of temp files (`.<16 hex>.tmp`) and of write and session lock directories. */
const LEFTOVER = /^\.[0-9a-f]{16}\.tmp$|\.session(?:\.lock|-lock)$/

/** fsyncs the file at `file`. */
function syncFile(file: string): void {
  const fd = fsSync.openSync(file, 'r')
  try {
    fsSync.fsyncSync(fd)
  } finally {
    fsSync.closeSync(fd)
  }
}

/** When the current event-loop turn started running file store calls (performance.now()); undefined between turns. */
let turnStarted: number | undefined

/**
 * The store's calls are synchronous system calls behind a promise, and a loop that awaits one
 * after another runs on microtasks alone: it would never let timers or I/O run (a session lock's
 * refresh, say, which would then be lost). So once one event-loop turn has spent FAIR_MS in them,
 * the next call first waits for setImmediate. Resolves nothing (undefined) when no wait is due.
 */
function fairTurn(): Promise<void> | undefined {
  const now = performance.now()
  if (turnStarted === undefined) {
    turnStarted = now
    setImmediate(() => (turnStarted = undefined))
    return undefined
  }
  return now - turnStarted < FAIR_MS ? undefined : new Promise((resolve) => setImmediate(resolve))
}
/** See fairTurn(). */
const FAIR_MS = 2

/** `item` unless it expired: an expired file reads as absent until deleteExpired() removes it. */
const live = <T extends { expires: number }>(item: T | undefined) =>
  item !== undefined && (item.expires === 0 || item.expires > Date.now()) ? item : undefined

/**
 * In a shared temp directory another user could have made our folder, or could write to it,
 * and plant sessions; file names are session ids, so no one else may list them either.
 */
async function assertPrivate(dir: string): Promise<void> {
  if (process.getuid === undefined) return // Windows: os.tmpdir() is already per user
  const stat = await fs.lstat(dir)
  if (!stat.isDirectory() || stat.uid !== process.getuid() || (stat.mode & 0o077) !== 0) {
    const message = `${dir} is not a directory of this user (uid ${process.getuid()}) with mode 0700`
    throw new SessionError('ERR_STORE_UNAVAILABLE', `${message}; remove it, or pass the directory option`)
  }
}

/**
 * A directory the caller named: used as it is, but refused when another user can list it (read
 * permission for group or others), since its file names are session ids.
 */
async function assertUnlisted(dir: string): Promise<void> {
  if (process.getuid === undefined) return // Windows: permissions are ACLs, not mode bits
  const stat = await fs.stat(dir)
  if ((stat.mode & 0o044) !== 0) {
    const mode = (stat.mode & 0o777).toString(8).padStart(4, '0')
    throw new SessionError(
      'ERR_STORE_UNAVAILABLE',
      `${dir} can be listed by other users (mode ${mode}), and its file names are session ids; chmod 700 it`,
    )
  }
}

/**
 * A store in a directory, one file per key, that several processes on one host share. A write,
 * under a per-key write lock held for one synchronous stretch (file-mutex.ts), goes in place into
 * the slot of the key's file that does not hold the current record (file-format.ts), so a reader
 * sees the old record or the new one whole; a record that no longer fits its slot, and every
 * `durable` write, goes into a new file renamed over the old one. fsync only with `durable`.
 * Expired keys read as absent, and `deleteExpired()` removes their files. Expiry reads
 * `Date.now()`. Reads and writes are synchronous system calls behind promises (see readItem).
 *
 * Its `lock` is proper-lockfile on the directory `<key's file>-lock`, tried again with jittered
 * backoff until `wait`. A lock ends when released, or `ttl` s after it was taken (a timer of
 * the holder releases it). Its holder refreshes the directory's mtime every second; a holder
 * that died leaves a directory that a waiter takes over `ttl` + 1 s (the waiter's ttl) after the
 * last refresh, so never sooner than `ttl` s after it was taken. A release removes the directory
 * only if it is still this holder's; it rejects with ERR_STORE_UNAVAILABLE if removing fails
 * (the lock then goes stale as a dead holder's does); its `held()` reads the directory's owner token.
 *
 * Links are never followed: a symbolic link (or a directory, a FIFO) where a key's file should be
 * reads as ERR_CORRUPT, as a file that does not parse does (`delete` removes the link, a `set`
 * replaces it; its target is never read or changed), and a link at a lock path is judged, and
 * removed once stale, as itself.
 *
 * @example
 * const store = fileStore({ directory: '/var/lib/myapp/sessions' })
 * const s = await tieSession(undefined, { store })
 */
export function fileStore(options: FileStoreOptions = {}): FileStore {
  const { maxValueBytes = 1_000_000, durable = false } = options
  if (options.directory !== undefined && (typeof options.directory !== 'string' || options.directory === '')) {
    throw new TypeError('fileStore: directory must be a non-empty string')
  }
  if (!Number.isSafeInteger(maxValueBytes) || maxValueBytes <= 0) {
    throw new TypeError('fileStore: maxValueBytes must be a positive integer (bytes)')
  }
  if (typeof durable !== 'boolean') throw new TypeError('fileStore: durable must be true or false')
  const isDefault = options.directory === undefined
  const user = process.getuid?.() ?? os.userInfo().username
  const directory = path.resolve(options.directory ?? path.join(os.tmpdir(), `tied-session-${user}`))
  const pending = new Set<Promise<unknown>>()
  /** Releases of the session locks this store holds: close() releases them. */
  const held = new Set<() => Promise<void>>()
  let ready: Promise<void> | undefined

  /** Creates the directory once; a failure is tried again next time, as the user may fix it. */
  function prepare(): Promise<void> {
    ready ??= (async () => {
      await fs.mkdir(directory, { recursive: true, mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
        if (!isDefault || err.code !== 'EEXIST') throw err // assertPrivate() explains an EEXIST
      })
      if (isDefault) await assertPrivate(directory)
      else await assertUnlisted(directory)
    })().catch((err: unknown) => {
      ready = undefined
      throw err
    })
    return ready
  }

  /** Runs `fn` once the directory is there; a file-system failure becomes ERR_STORE_UNAVAILABLE. */
  async function guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    const turn = fairTurn()
    if (turn !== undefined) await turn
    const attempt = () => prepare().then(fn)
    const run = attempt().catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err
      ready = undefined // the directory was removed (a temp cleaner, say): make it again, once
      return attempt()
    })
    pending.add(run)
    try {
      return await run
    } catch (cause) {
      if (cause instanceof SessionError) throw cause
      const code = (cause as NodeJS.ErrnoException).code ?? String(cause)
      const message = `${what} failed in ${directory} (${code}); check that this user can write there`
      throw new SessionError('ERR_STORE_UNAVAILABLE', message, { cause })
    } finally {
      pending.delete(run)
    }
  }

  /** Whether `key` has a live value; a corrupt file counts as there (get() says what is wrong with it). */
  function present(key: string, file: string): boolean {
    try {
      return live(readItem(key, file)) !== undefined
    } catch (err) {
      if (isSessionError(err, 'ERR_CORRUPT')) return true
      throw err
    }
  }

  const pathOf = (key: string) => path.join(directory, fileName(key))

  const expires = (ttl: number) => (ttl === 0 ? 0 : expiryTime(ttl))

  async function entries(): Promise<Array<[key: string, file: string]>> {
    const found: Array<[string, string]> = []
    for (const name of await fs.readdir(directory)) {
      const key = keyOf(name)
      if (key !== undefined) found.push([key, path.join(directory, name)])
    }
    return found
  }

  /** Removes the temp files, lock directories and holder files that dead processes left (see LEFTOVER_MS). */
  async function removeLeftovers(): Promise<void> {
    for (const name of await fs.readdir(directory)) {
      const leftover = path.join(directory, name)
      if (HOLDER_NAME.test(name)) {
        // a write lock's holder file: left by a process that is gone (or unused for LEFTOVER_MS: a
        // live process makes its own again when it next writes)
        const left = (() => {
          try {
            return leftHolder(leftover, LEFTOVER_MS)
          } catch {
            return false // gone meanwhile, or unreadable: left alone
          }
        })()
        if (left) await fs.rm(leftover, { force: true })
        continue
      }
      if (!LEFTOVER.test(name)) continue
      const stat = await fs.lstat(leftover).catch(() => undefined) // gone meanwhile; a lock link is judged as itself
      if (stat === undefined || stat.mtimeMs > Date.now() - LEFTOVER_MS) continue
      await fs.rm(leftover, { recursive: true, force: true })
    }
  }

  return {
    directory,

    async get(key): Promise<Entry | undefined> {
      const file = pathOf(key)
      const item = live(await guard('get', async () => readItem(key, file)))
      if (item === undefined) return undefined
      return item.flags ? { value: item.value, flags: item.flags, version: item.version } : { value: item.value, version: item.version }
    },

    async write(key: string, value: Value, opts: WriteOptions): Promise<WriteResult> {
      const bytes = Buffer.byteLength(value)
      if (bytes > maxValueBytes) {
        const message = `value of ${bytes} bytes for "${key}" is over maxValueBytes (${maxValueBytes})`
        throw new SessionError('ERR_TOO_LARGE', `${message}; store less, or raise maxValueBytes`)
      }
      const file = pathOf(key)
      const item: Item = { version: randomHex(), expires: expires(opts.ttl), value }
      if (opts.flags) item.flags = opts.flags
      /** What a write in `opts.mode` finds in `current`, holding the lock: undefined when it may store. */
      const refused = (current: { version: string } | undefined): WriteResult | undefined => {
        if (opts.mode === 'set') return undefined
        if (opts.mode === 'add') return current === undefined ? undefined : 'exists'
        if (current === undefined) return 'not_found'
        return opts.mode === 'cas' && current.version !== opts.version ? 'exists' : undefined
      }
      const result = await guard('write', async () => {
        if (!durable) {
          return withWriteLock(directory, key, file, (held) => {
            const open = openItem(key, file, opts.mode === 'set')
            try {
              const result = refused(live(open?.found ?? open?.legacy))
              if (result !== undefined) return result
              storeItem(directory, file, open, item, held)
              return 'stored' as const
            } finally {
              open?.close()
            }
          })
        }
        // durable: the temp file is written and fsynced before the lock, so the lock is never held
        // across an fsync; the directory is fsynced after the rename, so the rename is on disk too
        const tmp = await writeTemp(directory, item, true)
        const result = await withWriteLock(directory, key, file, (held) => {
          const result = refused(opts.mode === 'set' ? undefined : live(readItem(key, file)))
          if (result === undefined) commitTemp(tmp, file, held)
          return result ?? 'stored'
        }).catch((err: unknown) => {
          fsSync.rmSync(tmp, { force: true })
          throw err
        })
        if (result !== 'stored') fsSync.rmSync(tmp, { force: true })
        else await syncDirectory(directory)
        return result
      })
      if (result === 'stored') opts.onVersion?.(item.version) // the version it wrote: the next cas needs no read
      return result
    },

    async delete(key) {
      const file = pathOf(key)
      return guard('delete', () =>
        withWriteLock(directory, key, file, () => {
          const wasLive = present(key, file)
          fsSync.rmSync(file, { force: true }) // expired or corrupt files too: deleting is the way out
          return wasLive
        }),
      )
    },

    async touch(key, ttl) {
      const file = pathOf(key)
      const touched = await guard('touch', () =>
        withWriteLock(directory, key, file, (held) => {
          const open = openItem(key, file, false)
          try {
            const item = live(open === undefined ? undefined : itemIn(open))
            if (item === undefined) return false
            // same version: the value did not change
            const touched = { ...item, expires: expires(ttl) }
            if (!durable) return (storeItem(directory, file, open, touched, held), true)
            // a durable touch writes a new file and fsyncs it under the lock: touches are rare
            const tmp = writeTemp(directory, touched)
            syncFile(tmp)
            commitTemp(tmp, file, held)
            return true
          } finally {
            open?.close()
          }
        }),
      )
      if (touched && durable) await guard('touch', () => syncDirectory(directory))
      return touched
    },

    async *keys(prefix = '') {
      for (const [key, file] of await guard('keys', entries)) {
        if (key.startsWith(prefix) && (await guard('keys', async () => present(key, file)))) yield key
      }
    },

    deleteExpired: (options = {}) =>
      guard('deleteExpired', async () => {
        const expired = (key: string, file: string) => {
          let item: Item | undefined
          try {
            item = readItem(key, file)
          } catch (err) {
            if (isSessionError(err, 'ERR_CORRUPT')) return false // left for a person to look at
            throw err
          }
          return item !== undefined && live(item) === undefined
        }
        let removed = 0
        const all = await entries()
        for (const [i, [key, file]] of all.entries()) {
          options.onProgress?.(i, all.length)
          const turn = fairTurn() // a sweep of many files reads them synchronously: let requests run meanwhile
          if (turn !== undefined) await turn
          if (!expired(key, file)) continue // most files are live: look before taking the lock
          const gone = await withWriteLock(directory, key, file, () => {
            if (!expired(key, file)) return false // rewritten meanwhile
            fsSync.rmSync(file, { force: true })
            return true
          })
          if (gone) removed++
        }
        options.onProgress?.(all.length, all.length)
        await removeLeftovers()
        return removed
      }),

    async lock(key: string, opts: LockOptions) {
      const file = pathOf(key)
      return pollLock(key, opts, () => guard('lock', () => takeSessionLock(key, file, opts.ttl, held)))
    },

    /** Also releases the session locks this store still holds. */
    async close() {
      await Promise.allSettled([...held].map((release) => release()))
      await Promise.allSettled([...pending])
    },
  }
}
