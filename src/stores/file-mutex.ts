/**
 * The file store's write lock: `<file>.lock`, a hard link to this process's holder file
 * `.<token>.holder` in the store's directory (whose text names the holder:
 * `tied-session:<pid>@<pid namespace>:<token>`), made and removed around one write, delete or touch.
 *
 * link() is an atomic exclusive create (EEXIST when anything is at the path), and one system
 * call that makes no inode: the holder file is made once per process and directory. (A symbolic
 * link, as before, makes and frees an inode per write; on ext4 that cost 20-200 µs and grew as
 * freed inodes piled up, since ext4 skips recently freed inodes when it allocates one: 4,600-7,500
 * symlink + unlink pairs/s against 60,000-114,000 link + unlink on this VM.) The holder checks
 * that a lock is still its own by the inode (lstat). A lock lives for microseconds: it is taken,
 * used and removed in one synchronous stretch of JavaScript, with no await between, so no other
 * code of this process runs while it is held. A waiter retries with a short jittered backoff. A
 * holder that died (its pid is gone) leaves a lock that the next writer takes over at once; any
 * other lock (a live pid that stalled, a pid of another PID namespace, an older version's
 * symbolic link or proper-lockfile directory, anything planted by someone) once it is STALE_MS
 * old: a link by its ctime (which link() sets), anything else by its own mtime. An older
 * version's lock at the same path keeps both versions out of each other's writes during an
 * upgrade. A pid is trusted only from a holder in this PID namespace (containers sharing one
 * directory see different pids). On Windows the lock is a file made with O_EXCL holding the text.
 */
import fs, { constants } from 'node:fs'
import path from 'node:path'
import { SessionError } from '../errors.js'
import { randomHex } from './file-keys.js'

/** A lock this old is taken over whoever holds it; a live holder keeps one for microseconds. */
export const STALE_MS = 4000
/** How long a writer waits for a held lock before ERR_STORE_UNAVAILABLE. */
const WAIT_MS = 5000

const PROCESS_TOKEN = randomHex()
let taken = 0
const OURS = /^tied-session:(\d+)@([^:]*):[0-9a-f]+$/
/** The names of holder files: `.<16 hex>.holder`. */
export const HOLDER_NAME = /^\.[0-9a-f]{16}\.holder$/

/** This process's PID namespace ('pid:[4026531836]' on Linux), so that a pid is judged only where it means something. */
export const PID_NAMESPACE = (() => {
  try {
    return fs.readlinkSync('/proc/self/ns/pid').replace(/[^\w[\]]/g, '')
  } catch {
    return process.platform // no /proc: pids of one host
  }
})()
/** Windows: the lock is a file made with O_EXCL holding the holder's text, rather than a link. */
const AS_FILE = process.platform === 'win32'
const TEXT = `tied-session:${process.pid}@${PID_NAMESPACE}:${PROCESS_TOKEN}`

/** A process's holder file in one directory, and its inode. */
interface Holder {
  file: string
  dev: bigint
  ino: bigint
}
/** This process's holder files, by directory; removed when the process exits. */
const holders = new Map<string, Holder>()

/** This process's holder file in `directory`, made (again, with `remake`: swept or the directory made anew) when needed. */
function holderIn(directory: string, remake = false): Holder {
  let holder = holders.get(directory)
  if (holder !== undefined && !remake) return holder
  const file = path.join(directory, `.${PROCESS_TOKEN}.holder`)
  fs.rmSync(file, { force: true })
  fs.writeFileSync(file, TEXT, { flag: 'wx', mode: 0o600 }) // O_EXCL: never through a link
  const { dev, ino } = fs.lstatSync(file, { bigint: true })
  if (holders.size === 0) process.once('exit', removeHolders)
  holders.set(directory, (holder = { file, dev, ino }))
  return holder
}

/** Removes this process's holder files (at exit; one left by a killed process is swept by deleteExpired). */
function removeHolders(): void {
  for (const { file } of holders.values()) fs.rmSync(file, { force: true })
  holders.clear()
}

/** The text in the regular file at `file`, read without following a link. */
function textOf(file: string): string {
  const fd = fs.openSync(
    file,
    constants.O_RDONLY | ((constants.O_NOFOLLOW as number | undefined) ?? 0) | ((constants.O_NONBLOCK as number | undefined) ?? 0),
  )
  try {
    return fs.readFileSync(fd, 'utf8')
  } finally {
    fs.closeSync(fd)
  }
}

/** A system call's error code, or undefined. */
const codeOf = (err: unknown) => (err as NodeJS.ErrnoException).code

/** Whether process `pid` is gone (signal 0 tests for existence; EPERM: it exists, as another user's). */
function gone(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return false
  } catch (err) {
    return codeOf(err) === 'ESRCH'
  }
}

/** Whether `text` names a holder of this PID namespace whose process is gone. */
function deadHolder(text: string): boolean {
  const match = OURS.exec(text)
  return match !== null && match[2] === PID_NAMESPACE && gone(Number(match[1]))
}

/**
 * Whether the holder file `file` was left by a process that is gone (deleteExpired removes it):
 * its pid is gone, or it is older than `maxAgeMs` and no lock links to it.
 */
export function leftHolder(file: string, maxAgeMs: number): boolean {
  const stat = fs.lstatSync(file)
  if (!stat.isFile()) return false
  return deadHolder(textOf(file)) || (stat.nlink === 1 && stat.mtimeMs < Date.now() - maxAgeMs)
}

/**
 * Whether the thing at `lock` (lstat'ed as `stat`) is a dead holder's lock: ours with a pid that
 * is gone, or anything STALE_MS old: a regular file (a holder's link, or on Windows a lock file)
 * by its ctime, which link() and the file's making set; anything else by its mtime (a holder
 * file's mtime is when the process made it). ENOENT: removed meanwhile (not stale; try again).
 */
function isStale(lock: string, stat: fs.Stats): boolean {
  const file = stat.isFile()
  if ((file ? stat.ctimeMs : stat.mtimeMs) < Date.now() - STALE_MS) return true
  if (file) return deadHolder(textOf(lock))
  return stat.isSymbolicLink() && deadHolder(fs.readlinkSync(lock)) // an older version's lock
}

/**
 * Removes the stale thing at `lock` that was lstat'ed as `judged`. It is first renamed to a temp
 * name (atomic), so two waiters that found it stale cannot both remove it and the second one a
 * fresh lock; if what was moved is not what was judged (replaced meanwhile by a live holder), it
 * is put back (link fails if yet another lock is there: that holder then finds its lock lost
 * before it renames, see held()).
 */
function removeStale(directory: string, lock: string, judged: fs.Stats): void {
  const moved = path.join(directory, `.${randomHex()}.tmp`) // deleteExpired sweeps it if we die here
  try {
    fs.renameSync(lock, moved)
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return // another waiter moved it
    throw err
  }
  const now = fs.lstatSync(moved)
  if (now.ino !== judged.ino || now.dev !== judged.dev) {
    try {
      if (now.isDirectory()) fs.renameSync(moved, lock)
      else fs.linkSync(moved, lock) // link() does not follow a symbolic link: it links the link
    } catch {
      // another lock is there now: the holder we moved finds its lock lost (held() is false)
    }
  }
  fs.rmSync(moved, { recursive: true, force: true })
}

/**
 * One try: true when this process now holds `lock` (`target` is the text of a Windows lock file),
 * false when another holder does.
 */
function tryTake(directory: string, lock: string, target: string): boolean {
  try {
    if (AS_FILE) fs.writeFileSync(lock, target, { flag: 'wx', mode: 0o600 })
    else link(directory, lock)
    return true
  } catch (err) {
    if (codeOf(err) !== 'EEXIST') throw err
  }
  let stat: fs.Stats
  try {
    stat = fs.lstatSync(lock)
    if (!isStale(lock, stat)) return false
  } catch (err) {
    if (codeOf(err) === 'ENOENT') return tryTake(directory, lock, target) // released meanwhile
    throw err
  }
  removeStale(directory, lock, stat)
  return false // the next try, after the backoff, takes it unless another waiter was quicker
}

/** Links `lock` to this process's holder file; the holder file is made again if it is gone (swept, or the directory made anew). */
function link(directory: string, lock: string): void {
  try {
    fs.linkSync(holderIn(directory).file, lock)
  } catch (err) {
    if (codeOf(err) !== 'ENOENT') throw err
    fs.linkSync(holderIn(directory, true).file, lock) // ENOENT again: the directory is gone (the store makes it again)
  }
}

/** Whether the lock at `lock` is still this holder's: a link to its holder file (on Windows: a file holding `target`). */
function holds(directory: string, lock: string, target: string): boolean {
  try {
    if (AS_FILE) return fs.readFileSync(lock, 'utf8') === target
    const stat = fs.lstatSync(lock, { bigint: true })
    const holder = holders.get(directory)
    return holder !== undefined && stat.ino === holder.ino && stat.dev === holder.dev
  } catch (err) {
    if (codeOf(err) === 'ENOENT' || codeOf(err) === 'EISDIR') return false // gone, or not ours (taken over)
    throw err
  }
}

/** Jittered backoff: 0.1-0.2 ms at first (a lock lives microseconds; setTimeout makes it 1 ms), growing to 10-20 ms. */
const backoff = (attempt: number) => Math.min(20, 0.2 * 1.6 ** attempt) * (0.5 + Math.random() / 2)

/**
 * Runs `fn` holding the write lock of `file` (the link `<file>.lock`) and returns what it returns.
 * `fn` is synchronous, so the lock is never held across an await. `held()` throws if the lock
 * was taken over meanwhile (only a holder stopped for STALE_MS can be); call it just before the
 * rename that commits a write.
 */
export async function withWriteLock<T>(directory: string, key: string, file: string, fn: (held: () => void) => T): Promise<T> {
  const lock = `${file}.lock`
  const target = AS_FILE ? `${TEXT}${(taken++).toString(16)}` : TEXT
  const started = performance.now()
  for (let attempt = 0; !tryTake(directory, lock, target); attempt++) {
    if (performance.now() - started > WAIT_MS) {
      const hint = `another writer holds ${lock}; a dead process's lock is taken over at once, a stalled one's after ${STALE_MS / 1000} s`
      const cause = Object.assign(new Error(`${lock} is held`), { code: 'ELOCKED' })
      throw new SessionError('ERR_STORE_UNAVAILABLE', `could not lock key "${key}" within ${WAIT_MS / 1000} s (${hint}); try again`, {
        cause,
      })
    }
    await new Promise((resolve) => setTimeout(resolve, backoff(attempt)))
  }
  let checked = false
  const held = () => {
    if ((checked = holds(directory, lock, target))) return
    const message = `lost the lock of key "${key}" (this process stalled for over ${STALE_MS / 1000} s); try again`
    throw new SessionError('ERR_STORE_UNAVAILABLE', message)
  }
  try {
    return fn(held)
  } finally {
    // only our own link: after a takeover, the link there is the new holder's (checked: held()
    // just found it ours, in this same synchronous stretch)
    if (checked || holds(directory, lock, target)) fs.unlinkSync(lock)
  }
}
