import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import test, { type ExecutionContext } from 'ava'
import sinon from 'sinon'
import { SessionError } from '../../src/errors.js'
import { fileStore, type FileStore } from '../../src/stores/file.js'
import { HOLDER_NAME, PID_NAMESPACE } from '../../src/stores/file-mutex.js'
import { tieSession } from '../../src/tie.js'
import { runFixture } from '../helpers/child.js'
import { storeContract } from '../helpers/store-contract.js'
import { tempDir } from '../helpers/temp-dir.js'

const contractDirs: string[] = []
test.after.always(() => Promise.all(contractDirs.map((dir) => fs.rm(dir, { recursive: true, force: true }))))

storeContract({
  name: 'file store',
  clock: 'fake',
  create: async () => {
    const directory = await fs.mkdtemp(path.join(os.tmpdir(), 'tied-session-contract-'))
    contractDirs.push(directory)
    return fileStore({ directory })
  },
  peer: async (_t, store) => fileStore({ directory: (store as FileStore).directory }),
})

/** A store in a fresh directory, closed in teardown. */
async function open(t: ExecutionContext, options: { maxValueBytes?: number } = {}) {
  const store = fileStore({ directory: await tempDir(t, 'file-test'), ...options })
  t.teardown(() => store.close())
  return store
}

/** A store with the default directory, as if os.tmpdir() were `tmp` (it reads TMPDIR on every call). */
function defaultStoreUnder(tmp: string) {
  const saved = process.env.TMPDIR
  process.env.TMPDIR = tmp
  try {
    return fileStore()
  } finally {
    if (saved === undefined) delete process.env.TMPDIR
    else process.env.TMPDIR = saved
  }
}

/** The names in `dir` but this process's write-lock holder file (`.<16 hex>.holder`, made at its first write there). */
const listing = async (dir: string) => (await fs.readdir(dir)).filter((name) => !HOLDER_NAME.test(name))
const user = () => String(process.getuid?.() ?? os.userInfo().username)
const mode = async (file: string) => (await fs.stat(file)).mode & 0o777
const errorOf = async (t: ExecutionContext, promise: Promise<unknown>) => t.throwsAsync(promise, { instanceOf: SessionError })

test('file store: the default directory is one folder per OS user under os.tmpdir()', (t) => {
  t.is(fileStore().directory, path.join(os.tmpdir(), `tied-session-${user()}`))
})

test('file store: the default directory is made with mode 0700 and files with mode 0600', async (t) => {
  const tmp = await tempDir(t, 'file-test')
  const store = defaultStoreUnder(tmp)
  t.teardown(() => store.close())
  t.is(store.directory, path.join(tmp, `tied-session-${user()}`))
  t.is(await store.write('abc', 'x', { ttl: 60, mode: 'set' }), 'stored')
  t.is(await mode(store.directory), 0o700)
  t.deepEqual(await listing(store.directory), ['abc.session'])
  t.is(await mode(path.join(store.directory, 'abc.session')), 0o600)
})

test('file store: a chosen directory is made with its parents, mode 0700, files 0600', async (t) => {
  const directory = path.join(await tempDir(t, 'file-test'), 'a', 'b')
  const store = fileStore({ directory })
  t.teardown(() => store.close())
  await store.write('abc', 'x', { ttl: 60, mode: 'set' })
  t.is(await mode(directory), 0o700)
  t.is(await mode(path.dirname(directory)), 0o700)
  t.is(await mode(path.join(directory, 'abc.session')), 0o600)
})

test('file store: a directory you name is refused, with a clear error, when other users can list it (its file names are session ids)', async (t) => {
  if (process.platform === 'win32') return t.pass('POSIX modes only')
  for (const listable of [0o755, 0o744, 0o750]) {
    const directory = path.join(await tempDir(t, 'file-test'), 'named')
    await fs.mkdir(directory)
    await fs.chmod(directory, listable)
    const store = fileStore({ directory })
    t.teardown(() => store.close())
    const err = await errorOf(t, store.write('abc', 'x', { ttl: 60, mode: 'set' }))
    t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
    t.regex(err?.message ?? '', /can be listed by other users \(mode 07[45][045]\).*chmod 700 it/)
    t.deepEqual(await listing(directory), [], 'nothing was written')
  }
  const directory = path.join(await tempDir(t, 'file-test'), 'private')
  await fs.mkdir(directory, { mode: 0o711 }) // others may pass through, not list: accepted
  await fs.chmod(directory, 0o711)
  const store = fileStore({ directory })
  t.teardown(() => store.close())
  t.is(await store.write('abc', 'x', { ttl: 60, mode: 'set' }), 'stored')
})

test('file store: refuses a default directory that another user made or could use', async (t) => {
  if (process.platform === 'win32') return t.pass('POSIX modes only')
  const withMode = (mode: number) => async (dir: string) => {
    await fs.mkdir(dir)
    await fs.chmod(dir, mode)
  }
  const cases: Array<[label: string, make: (dir: string, tmp: string) => Promise<void>]> = [
    ['world-writable', withMode(0o777)],
    ['group-writable', withMode(0o770)],
    ['listable by others, and file names are session ids', withMode(0o755)],
    ['a regular file', (dir) => fs.writeFile(dir, 'x')],
    [
      'a symlink to a private directory',
      async (dir, tmp) => {
        await fs.mkdir(path.join(tmp, 'elsewhere'), { mode: 0o700 })
        await fs.symlink('elsewhere', dir)
      },
    ],
  ]
  if (process.getuid?.() === 0) {
    const chowned = async (dir: string) => {
      await withMode(0o700)(dir)
      await fs.chown(dir, 65534, 65534)
    }
    cases.push(['owned by another user', chowned])
  }
  for (const [label, make] of cases) {
    const tmp = await tempDir(t, 'file-test')
    const store = defaultStoreUnder(tmp)
    await make(store.directory, tmp)
    const err = await errorOf(t, store.write('abc', 'x', { ttl: 60, mode: 'set' }))
    t.is(err?.code, 'ERR_STORE_UNAVAILABLE', label)
    t.regex(err?.message ?? '', /^tied-session: .*remove it, or pass the directory option/, label)
    t.is((await errorOf(t, store.get('abc')))?.code, 'ERR_STORE_UNAVAILABLE', label)
    const written = (await fs.readdir(tmp, { recursive: true })).filter((name) => name.endsWith('.session'))
    t.deepEqual(written, [], label)
  }
  // once the user fixes the directory, the same store works
  const tmp = await tempDir(t, 'file-test')
  const store = defaultStoreUnder(tmp)
  await withMode(0o777)(store.directory)
  await errorOf(t, store.write('abc', 'x', { ttl: 60, mode: 'set' }))
  await fs.chmod(store.directory, 0o700)
  t.is(await store.write('abc', 'x', { ttl: 60, mode: 'set' }), 'stored')
})

test('file store: unsafe keys stay inside the directory and round-trip through get and keys', async (t) => {
  const root = await tempDir(t, 'file-test')
  const directory = path.join(root, 'sessions')
  const store = fileStore({ directory })
  t.teardown(() => store.close())
  const keys = ['../../etc/passwd', 'a/b', '..', '.', '.hidden', 'sessión', 'with space', '', 'a\\b', '~x', 'abc.session']
  keys.push('😀', 'ABC', 'x'.repeat(100) + '/')
  for (const key of keys) t.is(await store.write(key, `value of ${key}`, { ttl: 60, mode: 'set' }), 'stored')
  t.deepEqual(await fs.readdir(root), ['sessions'])
  const names = await listing(directory)
  t.is(names.length, keys.length)
  for (const name of names) t.regex(name, /^~?[A-Za-z0-9_-]*\.session$/)
  t.true(names.includes('ABC.session'))
  for (const key of keys) t.is((await store.get(key))?.value, `value of ${key}`)
  const listed: string[] = []
  for await (const key of store.keys()) listed.push(key)
  t.deepEqual(listed.sort(), [...keys].sort())
  const under: string[] = []
  for await (const key of store.keys('../')) under.push(key)
  t.deepEqual(under, ['../../etc/passwd'])
  t.true(await store.touch('../../etc/passwd', 120))
  t.true(await store.delete('../../etc/passwd'))
  t.is((await listing(directory)).length, keys.length - 1)
})

test('file store: a key too long for a file name or not well-formed is ERR_INVALID_ID', async (t) => {
  const store = await open(t)
  t.is(await store.write('a'.repeat(232), 'x', { ttl: 60, mode: 'set' }), 'stored') // 240 bytes with ".session"
  for (const key of ['a'.repeat(233), 'é'.repeat(100), 'lone \uD800 surrogate']) {
    t.is((await errorOf(t, store.write(key, 'x', { ttl: 60, mode: 'set' })))?.code, 'ERR_INVALID_ID')
    t.is((await errorOf(t, store.get(key)))?.code, 'ERR_INVALID_ID')
    t.is((await errorOf(t, store.delete(key)))?.code, 'ERR_INVALID_ID')
    t.is((await errorOf(t, store.touch(key, 60)))?.code, 'ERR_INVALID_ID')
  }
  t.deepEqual(await listing(store.directory), ['a'.repeat(232) + '.session'])
})

test('file store: a file that does not parse is ERR_CORRUPT, naming the key', async (t) => {
  const store = await open(t)
  for (const garbage of ['no header at all', 'not json\nvalue', '{"v":1,"e":0}\nvalue', '']) {
    await fs.writeFile(path.join(store.directory, 'bad.session'), garbage)
    const err = await errorOf(t, store.get('bad'))
    t.is(err?.code, 'ERR_CORRUPT')
    t.regex(err?.message ?? '', /^tied-session: .*"bad"/)
    t.is((await errorOf(t, store.write('bad', 'x', { ttl: 60, mode: 'cas', version: '1' })))?.code, 'ERR_CORRUPT')
    t.is((await errorOf(t, store.write('bad', 'x', { ttl: 60, mode: 'add' })))?.code, 'ERR_CORRUPT')
  }
  const listed: string[] = []
  for await (const key of store.keys()) listed.push(key)
  t.deepEqual(listed, ['bad'])
  t.true(await store.delete('bad'))
  t.deepEqual(await listing(store.directory), [])
  await fs.writeFile(path.join(store.directory, 'bad.session'), 'garbage')
  t.is(await store.write('bad', 'fine', { ttl: 60, mode: 'set' }), 'stored')
  t.is((await store.get('bad'))?.value, 'fine')
})

test.serial('file store: deleteExpired removes exactly the expired files and counts them', async (t) => {
  const store = await open(t)
  const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'] })
  t.teardown(() => clock.restore())
  await store.write('short1', 'x', { ttl: 1, mode: 'set' })
  await store.write('short2', 'x', { ttl: 1, mode: 'set' })
  await store.write('medium', 'x', { ttl: 10, mode: 'set' })
  await store.write('forever', 'x', { ttl: 0, mode: 'set' })
  await store.write('touched', 'x', { ttl: 1, mode: 'set' })
  t.true(await store.touch('touched', 100))
  await fs.writeFile(path.join(store.directory, 'corrupt.session'), 'garbage')
  t.is(await store.deleteExpired(), 0)
  clock.tick(1001)
  t.is(await store.get('short1'), undefined)
  t.is(await store.deleteExpired(), 2)
  const left = ['corrupt.session', 'forever.session', 'medium.session', 'touched.session']
  t.deepEqual((await listing(store.directory)).sort(), left)
  t.is(await store.deleteExpired(), 0)
  clock.tick(10_000)
  t.is(await store.deleteExpired(), 1)
  t.deepEqual((await listing(store.directory)).sort(), ['corrupt.session', 'forever.session', 'touched.session'])
  t.false(await store.delete('medium'))
})

test('file store: deleteExpired also removes the temp files and lock directories of dead processes, once 10 minutes old', async (t) => {
  const store = await open(t)
  await store.write('kept', 'v', { ttl: 0, mode: 'set' })
  const release = await store.lock('live', { ttl: 60, wait: 0 }) // a live holder's lock: refreshed, never swept
  t.teardown(() => release())
  const dir = store.directory
  // what a writer killed before its rename, and holders killed while locked, leave behind
  const old = ['.0123456789abcdef.tmp', 'dead.session-lock', 'kept.session.lock', '~a2V5.session-lock']
  await fs.writeFile(path.join(dir, old[0]!), 'half a write')
  for (const name of old.slice(1)) {
    await fs.mkdir(path.join(dir, name))
    await fs.writeFile(path.join(dir, name, 'owner'), 'a dead holder')
  }
  const fresh = ['.fedcba9876543210.tmp', 'recent.session-lock']
  await fs.writeFile(path.join(dir, fresh[0]!), 'a write in progress')
  await fs.mkdir(path.join(dir, fresh[1]!))
  const stranger = 'notes.txt' // not ours: left alone whatever its age
  await fs.writeFile(path.join(dir, stranger), 'x')
  const elevenMinutesAgo = new Date(Date.now() - 11 * 60_000)
  for (const name of [...old, stranger]) await fs.utimes(path.join(dir, name), elevenMinutesAgo, elevenMinutesAgo)

  t.is(await store.deleteExpired(), 0, 'the count is of expired sessions only')
  t.deepEqual((await listing(dir)).sort(), [...fresh, 'kept.session', 'live.session-lock', stranger].sort())
  t.is((await store.get('kept'))?.value, 'v')
  t.is(await store.write('kept', 'w', { ttl: 0, mode: 'set' }), 'stored', 'its write lock is free again')
  await release()
  t.is(await store.lock('live', { ttl: 60, wait: 0 }).then((again) => again()), undefined, 'the live lock was released normally')
})

test('file store: touch keeps the version, so a cas after it still lands', async (t) => {
  const store = await open(t)
  await store.write('k', 'v1', { ttl: 60, mode: 'set' })
  const { version } = (await store.get('k'))!
  t.true(await store.touch('k', 120))
  t.is((await store.get('k'))?.version, version)
  t.is(await store.write('k', 'v2', { ttl: 60, mode: 'cas', version: version! }), 'stored')
})

test('file store: maxValueBytes counts UTF-8 bytes and a refused value writes nothing', async (t) => {
  const store = await open(t, { maxValueBytes: 10 })
  t.is(await store.write('k', 'é'.repeat(5), { ttl: 60, mode: 'set' }), 'stored')
  t.is((await errorOf(t, store.write('k', 'é'.repeat(6), { ttl: 60, mode: 'set' })))?.code, 'ERR_TOO_LARGE')
  t.is((await errorOf(t, store.write('other', 'x'.repeat(11), { ttl: 60, mode: 'set' })))?.code, 'ERR_TOO_LARGE')
  t.deepEqual(await listing(store.directory), ['k.session'])
  t.is((await store.get('k'))?.value, 'é'.repeat(5))
})

test('file store: bad options are a TypeError naming the option', (t) => {
  t.throws(() => fileStore({ directory: '' }), { instanceOf: TypeError, message: /directory/ })
  t.throws(() => fileStore({ maxValueBytes: 0 }), { instanceOf: TypeError, message: /maxValueBytes/ })
  t.throws(() => fileStore({ maxValueBytes: 1.5 }), { instanceOf: TypeError, message: /maxValueBytes/ })
})

test('file store: a file-system failure is ERR_STORE_UNAVAILABLE with the cause', async (t) => {
  const file = path.join(await tempDir(t, 'file-test'), 'not-a-directory')
  await fs.writeFile(file, 'x')
  const store = fileStore({ directory: file })
  const attempts = [store.write('k', 'x', { ttl: 60, mode: 'set' }), store.get('k'), store.delete('k'), store.deleteExpired()]
  for (const attempt of attempts) {
    const err = await errorOf(t, attempt)
    t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
    t.is((err?.cause as NodeJS.ErrnoException | undefined)?.code, 'EEXIST')
    t.regex(err?.message ?? '', /^tied-session: .*not-a-directory/)
  }
  await t.throwsAsync(
    async () => {
      for await (const key of store.keys()) void key
    },
    { instanceOf: SessionError, message: /ERR|EEXIST/ },
  )
})

test('file store: a directory removed while in use (a temp cleaner, say) is made again', async (t) => {
  const store = await open(t)
  await store.write('a', '1', { ttl: 60, mode: 'set' })
  await fs.rm(store.directory, { recursive: true })
  t.is(await store.get('a'), undefined)
  t.is(await store.write('b', '2', { ttl: 60, mode: 'set' }), 'stored')
  t.is((await store.get('b'))?.value, '2')
  t.is(await mode(store.directory), 0o700)
})

test('file store: a lock another process holds is ERR_STORE_UNAVAILABLE after about 5 s, and get still reads', async (t) => {
  const store = await open(t)
  await store.write('k', 'old', { ttl: 60, mode: 'set' })
  const lockDir = path.join(store.directory, 'k.session.lock')
  await fs.mkdir(lockDir)
  const refresh = setInterval(() => void fs.utimes(lockDir, new Date(), new Date()).catch(() => {}), 500) // a live holder
  t.teardown(() => clearInterval(refresh))
  const started = Date.now()
  const err = await errorOf(t, store.write('k', 'new', { ttl: 60, mode: 'set' }))
  const waited = Date.now() - started
  t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
  t.is((err?.cause as NodeJS.ErrnoException | undefined)?.code, 'ELOCKED')
  t.true(waited > 3000 && waited < 9000, `waited ${waited} ms`)
  t.is((await store.get('k'))?.value, 'old')
  const listed: string[] = []
  for await (const key of store.keys()) listed.push(key)
  t.deepEqual(listed, ['k'])
})

test('file store: the stale lock of a dead process is taken over', async (t) => {
  const store = await open(t)
  const lockDir = path.join(store.directory, 'k.session.lock')
  await fs.mkdir(lockDir)
  const minuteAgo = new Date(Date.now() - 60_000)
  await fs.utimes(lockDir, minuteAgo, minuteAgo)
  const started = Date.now()
  t.is(await store.write('k', 'x', { ttl: 60, mode: 'set' }), 'stored')
  t.true(Date.now() - started < 2000)
  t.deepEqual(await listing(store.directory), ['k.session'])
})

test('file store: four processes doing get + cas on one key lose no write', async (t) => {
  const store = await open(t)
  await store.write('shared', '{}', { ttl: 600, mode: 'set' })
  const ids = ['1', '2', '3', '4']
  const workers = ids.map((id) => runFixture(t, 'file-store-cas.ts', [store.directory, 'shared', id, '50']))
  // started together once every one has loaded (a start time fixed in advance failed on a loaded
  // CI machine: the workers loaded one after another and never overlapped)
  await Promise.all(workers.map((w) => w.line('ready')))
  for (const w of workers) w.process.kill('SIGUSR2')
  const exits = await Promise.all(workers.map((w) => w.exited))
  for (const exit of exits) t.is(exit.code, 0, exit.stderr)
  const object = JSON.parse(String((await store.get('shared'))!.value)) as Record<string, number>
  t.is(Object.keys(object).length, 200)
  for (const id of ids) for (let i = 0; i < 50; i++) t.is(object[`w${id}_${i}`], i)
  const conflicts = exits.map((e) => (JSON.parse(e.stdout.trim().split('\n').pop()!) as { conflicts: number }).conflicts)
  t.log(`cas conflicts per worker: ${conflicts.join(', ')}`)
  t.true(
    conflicts.some((n) => n > 0),
    'the workers never raced, so the test proved nothing',
  )
})

test('file store: readers never see half a value, and a writer killed mid-write leaves a whole one', async (t) => {
  const store = await open(t)
  /** The value's number, after checking that it is whole. */
  const whole = (raw: string | Buffer | undefined) => {
    const value = raw === undefined ? undefined : String(raw)
    const { n, pad, sha256 } = JSON.parse(value ?? 'null') as { n: number; pad: string; sha256: string }
    t.true(pad.length === 500_000 && pad.startsWith(`${n}:`), `value #${n} is cut`)
    t.is(createHash('sha256').update(pad).digest('hex'), sha256)
    return n
  }
  const writer = runFixture(t, 'file-store-writer.ts', [store.directory, 'big'])
  await writer.line('ready')
  const seen = new Set<number>()
  const killAt = Date.now() + 300 + Math.random() * 300
  while (Date.now() < killAt) seen.add(whole((await store.get('big'))?.value)) // reads race the writer's renames
  writer.process.kill('SIGKILL')
  t.is((await writer.exited).signal, 'SIGKILL')
  t.true(seen.size > 1, 'the reader never saw the writer make progress')
  const n = whole((await store.get('big'))?.value)
  const listed: string[] = []
  for await (const key of store.keys()) listed.push(key)
  t.deepEqual(listed, ['big'])
  t.log(`read ${seen.size} values; #${n} survived the kill; directory holds ${(await listing(store.directory)).join(', ')}`)
})

test('file store: a write that resolved survives its process being killed at once (SIGKILL), with or without durable', async (t) => {
  const store = await open(t)
  const writer = runFixture(t, 'file-store-crash.ts', [store.directory, 'plain', 'durable'])
  await writer.line('stored')
  writer.process.kill('SIGKILL')
  t.is((await writer.exited).signal, 'SIGKILL')
  t.is((await store.get('plain'))?.value, 'value plain')
  t.is((await store.get('durable'))?.value, 'value durable')
  t.deepEqual((await listing(store.directory)).sort(), ['durable.session', 'plain.session'], 'no temp file or lock left')
  const holderOf = (names: string[]) => names.filter((name) => HOLDER_NAME.test(name))
  t.is(holderOf(await fs.readdir(store.directory)).length, 1, "the killed writer's holder file")
  t.is(await store.deleteExpired(), 0)
  t.deepEqual(holderOf(await fs.readdir(store.directory)), [], 'deleteExpired removed the holder file of the process that is gone')
})

test('file store: durable: true writes, replaces, touches and deletes as the default does, leaving no temp file', async (t) => {
  const store = fileStore({ directory: await tempDir(t, 'file-test'), durable: true })
  t.teardown(() => store.close())
  t.is(await store.write('k', 'v1', { ttl: 60, mode: 'add' }), 'stored')
  t.is(await store.write('k', 'v0', { ttl: 60, mode: 'add' }), 'exists')
  const { version } = (await store.get('k'))!
  t.is(await store.write('k', 'v2', { ttl: 60, mode: 'cas', version: 'stale' }), 'exists')
  t.is(await store.write('k', 'v2', { ttl: 60, mode: 'cas', version: version! }), 'stored')
  t.true(await store.touch('k', 120))
  t.is((await store.get('k'))?.value, 'v2')
  t.is(await store.write('gone', 'x', { ttl: 60, mode: 'replace' }), 'not_found')
  t.deepEqual(await listing(store.directory), ['k.session'])
  t.is(await mode(path.join(store.directory, 'k.session')), 0o600)
  t.true(await store.delete('k'))
  t.throws(() => fileStore({ durable: 'yes' as unknown as boolean }), { instanceOf: TypeError, message: /durable/ })
})

test("file store: a write lock left by a dead process is taken over at once; a live process's, or one of another PID namespace, only once 4 s old", async (t) => {
  const store = await open(t)
  await store.write('k', 'old', { ttl: 60, mode: 'set' })
  const lock = path.join(store.directory, 'k.session.lock')
  const dead = spawnSync('true').pid // a pid that is surely gone: a child that has exited
  await fs.symlink(`tied-session:${dead}@${PID_NAMESPACE}:0123456789abcdef0`, lock)
  let started = performance.now()
  t.is(await store.write('k', 'new', { ttl: 60, mode: 'set' }), 'stored')
  t.true(performance.now() - started < 1000, `took ${performance.now() - started} ms`)
  t.is((await store.get('k'))?.value, 'new')
  // a live holder (this process, as far as the lock says) that stalled: taken over once its link is 4 s old
  await fs.symlink(`tied-session:${process.pid}@${PID_NAMESPACE}:0123456789abcdef1`, lock)
  const threeSecondsAgo = new Date(Date.now() - 3000)
  await fs.lutimes(lock, threeSecondsAgo, threeSecondsAgo)
  started = performance.now()
  t.is(await store.write('k', 'newer', { ttl: 60, mode: 'set' }), 'stored')
  const waited = performance.now() - started
  t.true(waited > 800 && waited < 4000, `waited ${waited} ms`)
  // a pid of another PID namespace (another container on the shared directory) means nothing here: judged by age only
  await fs.symlink(`tied-session:${dead}@pid[1]:0123456789abcdef2`, lock)
  const alsoThreeSecondsAgo = new Date(Date.now() - 3000)
  await fs.lutimes(lock, alsoThreeSecondsAgo, alsoThreeSecondsAgo)
  started = performance.now()
  t.is(await store.write('k', 'newest', { ttl: 60, mode: 'set' }), 'stored')
  const waitedToo = performance.now() - started
  t.true(waitedToo > 800 && waitedToo < 4000, `waited ${waitedToo} ms`)
  t.deepEqual(await listing(store.directory), ['k.session'])
})

test("file store: the write lock is a hard link to the holder file of its process: a dead holder's is taken over at once, a live one's once 4 s old", async (t) => {
  const store = await open(t)
  await store.write('k', 'old', { ttl: 60, mode: 'set' })
  const own = (await fs.readdir(store.directory)).filter((name) => HOLDER_NAME.test(name))
  t.is(own.length, 1, 'a write made this process its holder file')
  t.is(
    await fs.readFile(path.join(store.directory, own[0]!), 'utf8'),
    `tied-session:${process.pid}@${PID_NAMESPACE}:${own[0]!.slice(1, 17)}`,
  )
  t.is((await fs.stat(path.join(store.directory, own[0]!))).nlink, 1, 'no lock links to it between writes')
  const lock = path.join(store.directory, 'k.session.lock')
  const plantHolder = async (pid: number | undefined, name: string) => {
    const holder = path.join(store.directory, name)
    await fs.writeFile(holder, `tied-session:${pid}@${PID_NAMESPACE}:${name.slice(1, 17)}`, { mode: 0o600 })
    await fs.link(holder, lock)
    return holder
  }
  const deadHolder = await plantHolder(spawnSync('true').pid, '.00000000000000aa.holder')
  let started = performance.now()
  t.is(await store.write('k', 'new', { ttl: 60, mode: 'set' }), 'stored')
  t.true(performance.now() - started < 1000, `took ${performance.now() - started} ms`)
  t.is((await fs.stat(deadHolder)).nlink, 1, "the dead holder's lock was removed, its holder file left for deleteExpired")
  // a live holder that stalled (this process's pid, another holder file): taken over once its link is 4 s old by ctime
  await plantHolder(process.pid, '.00000000000000bb.holder')
  started = performance.now()
  t.is(await store.write('k', 'newer', { ttl: 60, mode: 'set' }), 'stored')
  const waited = performance.now() - started
  t.true(waited > 3500 && waited < 6000, `waited ${waited} ms`)
  t.is((await store.get('k'))?.value, 'newer')
  t.is(await store.deleteExpired(), 0)
  const left = (await fs.readdir(store.directory)).sort()
  t.deepEqual(left, ['.00000000000000bb.holder', own[0]!, 'k.session'].sort(), "deleteExpired removed the dead holder's file only")
})

test('file store: a script that used the store and closed it exits by itself', async (t) => {
  const directory = await tempDir(t, 'file-test')
  const child = runFixture(t, 'file-store-exit.ts', [directory], 15_000)
  await child.line('done')
  const closedAt = Date.now()
  const exit = await child.exited
  t.is(exit.code, 0, exit.stderr)
  t.false(exit.timedOut)
  t.true(Date.now() - closedAt < 2000, `exited ${Date.now() - closedAt} ms after closing`)
  t.deepEqual(await listing(directory), ['a.session'])
})

// --- session locks (Store.lock) ------------------------------------------------------------

test('file store: a session lock is the directory <file>-lock, apart from the write lock, and no key', async (t) => {
  const store = await open(t)
  await store.write('k', 'v', { ttl: 60, mode: 'set' })
  const release = await store.lock('k', { ttl: 10, wait: 0 })
  t.deepEqual((await listing(store.directory)).sort(), ['k.session', 'k.session-lock'])
  t.is(await store.write('k', 'w', { ttl: 60, mode: 'set' }), 'stored', 'the holder still writes (write lock k.session.lock)')
  const listed: string[] = []
  for await (const key of store.keys()) listed.push(key)
  t.deepEqual(listed, ['k'])
  await release()
  t.deepEqual(await listing(store.directory), ['k.session'])
  // a lock needs no data file, and keys that are no file name are ERR_INVALID_ID as for data
  await (
    await store.lock('nothing-here', { ttl: 10, wait: 0 })
  )()
  t.is((await errorOf(t, store.lock('a'.repeat(233), { ttl: 10, wait: 0 })))?.code, 'ERR_INVALID_ID')
})

test('file store: a lock directory that looks alive is respected until ttl + 1 s after its mtime, then taken over', async (t) => {
  const store = await open(t)
  await fs.mkdir(store.directory, { recursive: true })
  const dir = path.join(store.directory, 'k.session-lock')
  await fs.mkdir(dir) // another process's, refreshed just now
  // counted from its mtime, on the clock the store judges it by (under load this test may resume
  // well after the mkdir: a start taken then made the lock look taken over early)
  const { mtimeMs } = await fs.stat(dir)
  const release = await store.lock('k', { ttl: 1, wait: 6000 })
  const waited = Date.now() - mtimeMs
  t.true(waited >= 1950 && waited < 4500, `taken over ${waited} ms after its mtime`)
  await release()
  t.deepEqual(await listing(store.directory), [])
})

test('file store: a holder that stalled past its lock cannot release the lock of the process that took it over', async (t) => {
  const store = await open(t)
  const other = fileStore({ directory: store.directory }) // another process, as far as locks go
  t.teardown(() => other.close())
  const takeOver = async (key: string) => {
    const stalled = await store.lock(key, { ttl: 5, wait: 0 })
    const dir = path.join(store.directory, `${key}.session-lock`)
    t.deepEqual(await listing(dir), ['owner'])
    const longAgo = new Date(Date.now() - 60_000)
    await fs.utimes(dir, longAgo, longAgo) // as if its holder had stopped refreshing it a minute ago
    // wait 3000 ms: under the 6 s (ttl + 1 s) a lock that looked alive would need, so it was taken as stale
    const taker = await other.lock(key, { ttl: 5, wait: 3000 })
    return { stalled, taker, dir }
  }
  // released before its refresh notices: the removal finds another holder's token and leaves it
  const early = await takeOver('early')
  // released after its refresh noticed the lock was lost (proper-lockfile's onCompromised: no crash)
  const late = await takeOver('late')
  await early.stalled()
  await new Promise((resolve) => setTimeout(resolve, 1300))
  await late.stalled()
  for (const key of ['early', 'late']) {
    const err = await errorOf(t, store.lock(key, { ttl: 5, wait: 0 }))
    t.is(err?.code, 'ERR_LOCKED', `${key}: the stalled holder's release left the new lock in place`)
  }
  await Promise.all([early.taker(), late.taker()])
  for (const { dir } of [early, late]) await t.throwsAsync(fs.stat(dir), { code: 'ENOENT' })
})

test('file store: a process that exits holding a session lock removes it, and is not kept alive by it', async (t) => {
  const directory = await tempDir(t, 'file-test')
  const child = runFixture(t, 'lock-exit.ts', ['file', directory], 10_000)
  const exit = await child.exited
  t.is(exit.code, 0, exit.stderr)
  t.false(exit.timedOut)
  t.is(exit.stdout, 'holding\n')
  t.deepEqual(await listing(directory), [])
})

/** A file outside the store with a valid tied-session file's content (a "foreign session"), and how it looks now. */
async function foreignFile(t: ExecutionContext) {
  const outside = await tempDir(t, 'file-test')
  const target = path.join(outside, 'foreign.session')
  await fs.writeFile(target, '{"v":"0123456789abcdef","e":0}\n{"user":"someone else"}')
  const before = await fs.stat(target)
  const untouched = async (label: string) => {
    const now = await fs.stat(target)
    t.is(await fs.readFile(target, 'utf8'), '{"v":"0123456789abcdef","e":0}\n{"user":"someone else"}', `${label}: content`)
    t.is(now.mtimeMs, before.mtimeMs, `${label}: mtime`)
    t.is(now.mode, before.mode, `${label}: mode`)
  }
  return { outside, target, untouched }
}

test('file store: a link where a key file should be is ERR_CORRUPT, never read or written through; delete removes the link, set replaces it', async (t) => {
  const store = await open(t)
  const { target, untouched } = await foreignFile(t)
  await fs.mkdir(store.directory, { recursive: true })
  const link = path.join(store.directory, 'k.session')
  await fs.symlink(target, link)
  const corrupt = async (label: string, promise: Promise<unknown>) => {
    const err = await errorOf(t, promise)
    t.is(err?.code, 'ERR_CORRUPT', label)
    t.regex(err?.message ?? '', /"k" .* is a symbolic link, .*never followed/, label)
  }
  await corrupt('get', store.get('k'))
  await corrupt('tieSession', tieSession('k', { store }))
  for (const mode of ['add', 'replace', 'cas'] as const)
    await corrupt(mode, store.write('k', 'mine', { ttl: 60, mode, version: '0123456789abcdef' }))
  await corrupt('touch', store.touch('k', 600))
  t.is(await store.deleteExpired(), 0)
  await untouched('after get, add, replace, cas, touch and deleteExpired')
  t.true((await fs.lstat(link)).isSymbolicLink(), 'the link is still there: nothing was written through or over it')

  t.true(await store.delete('k'), 'delete is the way out, as for a corrupt file')
  await t.throwsAsync(fs.lstat(link), { code: 'ENOENT' })
  await untouched('after delete')

  await fs.symlink(target, link)
  t.is(await store.write('k', 'mine', { ttl: 60, mode: 'set' }), 'stored')
  t.true((await fs.lstat(link)).isFile(), 'set replaced the link with a file of its own')
  t.is((await store.get('k'))?.value, 'mine')
  await untouched('after set')
  // a dangling link, a directory and a FIFO are no session either (a FIFO must not hang the read)
  for (const [label, plant] of [
    ['a dangling link', () => fs.symlink(path.join(store.directory, 'nowhere'), link)],
    ['a directory', () => fs.mkdir(link)],
  ] as const) {
    await fs.rm(link, { recursive: true, force: true })
    await plant()
    t.is((await errorOf(t, store.get('k')))?.code, 'ERR_CORRUPT', label)
  }
})

test('file store: links at the lock paths are never followed: the target directory is left as it was', async (t) => {
  const store = await open(t)
  const { outside, untouched } = await foreignFile(t)
  await fs.mkdir(store.directory, { recursive: true })
  const longAgo = new Date(Date.now() - 60_000)
  await fs.utimes(outside, longAgo, longAgo) // stale-looking, so a lock would be taken over
  const outsideListing = async () => (await fs.readdir(outside)).sort()
  const before = await outsideListing()
  const { mtimeMs } = await fs.stat(outside)
  // the session lock <file>-lock and the write lock <file>.lock
  await fs.symlink(outside, path.join(store.directory, 'k.session-lock'))
  await fs.lutimes(path.join(store.directory, 'k.session-lock'), longAgo, longAgo) // a link judged by its own mtime: stale
  const release = await store.lock('k', { ttl: 5, wait: 3000 })
  t.true((await fs.lstat(path.join(store.directory, 'k.session-lock'))).isDirectory(), 'the stale link was replaced by a lock of its own')
  await release()
  t.deepEqual(await outsideListing(), before, 'the session lock wrote nothing into the target')

  await fs.symlink(outside, path.join(store.directory, 'k.session.lock'))
  await fs.lutimes(path.join(store.directory, 'k.session.lock'), longAgo, longAgo)
  t.is(await store.write('k', 'v', { ttl: 60, mode: 'set' }), 'stored', 'the stale link at the write lock was removed, not followed')
  t.deepEqual(await listing(store.directory), ['k.session'])
  t.deepEqual(await outsideListing(), before, 'the write lock wrote nothing into the target')
  t.is((await fs.stat(outside)).mtimeMs, mtimeMs, 'the target directory was not refreshed')
  // a fresh link is a held lock until it goes stale (by its own mtime), as a live process's would be
  await fs.symlink(outside, path.join(store.directory, 'k.session-lock'))
  t.is((await errorOf(t, store.lock('k', { ttl: 5, wait: 0 })))?.code, 'ERR_LOCKED')
  t.true((await fs.lstat(path.join(store.directory, 'k.session-lock'))).isSymbolicLink())
  await untouched('the file in the target directory')
})
