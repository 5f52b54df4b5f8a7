/**
 * Locks are leases with fencing (src/lease.ts): a holder that ran past lockTtl (stopped with
 * SIGSTOP, or stalled) cannot write over the next holder's work, on the memory, file and memcached
 * stores; and a memcached lock whose `add` timed out while the server was stopped does not block
 * the session once the server answers again.
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import anyTest, { type TestFn } from 'ava'
import sinon from 'sinon'
import {
  SessionError,
  closeStores,
  destroy,
  fileStore,
  memoryStore,
  regenerate,
  snapshot,
  tieSession,
  untie,
  type TieOptions,
} from '../src/index.js'
import { runFixture } from './helpers/child.js'
import { startMemcached, useMemcached, type MemcachedServer } from './helpers/memcached.js'
import { tempDir } from './helpers/temp-dir.js'

const test = anyTest as TestFn<unknown>
type Counter = { counter: number }

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

let server: MemcachedServer | undefined
test.before(async () => {
  server = await startMemcached()
})
test.after.always(async () => {
  await closeStores()
  await server?.stop()
})

/** A new session with counter 0; resolves to its id. */
async function newSession(options: TieOptions): Promise<string> {
  const s = await tieSession<Counter>(undefined, options)
  s.counter = 0
  await untie(s)
  return s._session_id
}

/** The session's counter as stored now. */
async function counter(id: string, options: TieOptions): Promise<number | undefined> {
  const s = await tieSession<Counter>(id, options)
  const { counter: value } = snapshot(s)
  await untie(s)
  return value
}

/** B: ties with the lock (waiting for it), adds 1 and unties: an acknowledged increment. */
async function nextHolder(id: string, options: TieOptions, lockTtl: number): Promise<void> {
  const b = await tieSession<Counter>(id, { ...options, lock: 'exclusive', lockTtl, lockTimeout: 15_000 })
  b.counter! += 1
  await untie(b)
}

const LOST = /^tied-session: the lock of session \w+ was lost: .*; nothing was written/

test('memory: a holder past lockTtl cannot overwrite the next holder: its untie is ERR_LOCKED (its lease ran out) and writes nothing', async (t) => {
  const options = { store: memoryStore() }
  const id = await newSession(options)
  const a = await tieSession<Counter>(id, { ...options, lock: 'exclusive', lockTtl: 1 })
  await sleep(1200) // A stalls past its lease
  await nextHolder(id, options, 5)
  a.counter! += 1
  const err = await t.throwsAsync(untie(a), { instanceOf: SessionError })
  t.is(err?.code, 'ERR_LOCKED')
  t.regex(err?.message ?? '', LOST)
  t.regex(err?.message ?? '', /lease \(lockTtl 1 s\) ran out/)
  t.is(await counter(id, options), 1, "the stored counter is B's write")
})

test.serial(
  "memory: a holder whose lease looks fresh but whose lock was taken over meets B's write: ERR_LOCKED (the store says another holds it), no merge",
  async (t) => {
    const options = { store: memoryStore() }
    const id = await newSession(options)
    // A's clock stands still (a clock fault): its own lease check cannot see the stall, the store's lock timer (a real timer) can
    const clock = sinon.useFakeTimers({ toFake: ['performance'] })
    t.teardown(() => clock.restore())
    const a = await tieSession<Counter>(id, { ...options, lock: 'exclusive', lockTtl: 1 })
    await sleep(1200)
    await nextHolder(id, options, 1)
    a.counter! += 1
    const err = await t.throwsAsync(untie(a), { instanceOf: SessionError })
    t.is(err?.code, 'ERR_LOCKED')
    t.regex(err?.message ?? '', LOST)
    t.regex(err?.message ?? '', /another holder has it now/)
    t.is(await counter(id, options), 1, "the stored counter is B's write")
  },
)

test("memory: destroy and regenerate past the lease are ERR_LOCKED too, and leave the next holder's session as it is", async (t) => {
  const options = { store: memoryStore() }
  const id = await newSession(options)
  const exclusive = { ...options, lock: 'exclusive', lockTtl: 1 } as const
  const a = await tieSession<Counter>(id, exclusive)
  const a2 = await tieSession<Counter>(await newSession(options), exclusive)
  await sleep(1200)
  await nextHolder(id, options, 5)
  t.is((await t.throwsAsync(destroy(a), { instanceOf: SessionError }))?.code, 'ERR_LOCKED')
  t.is(await counter(id, options), 1, 'not destroyed')
  const old = a2._session_id
  t.is((await t.throwsAsync(regenerate(a2), { instanceOf: SessionError }))?.code, 'ERR_LOCKED')
  t.is(a2._session_id, old, 'no new id')
  t.is(await counter(old, options), 0, 'the old id is still there')
})

test('memory: within its lease a holder saves as before, and a write by a tie without the lock is merged', async (t) => {
  const options = { store: memoryStore() }
  const id = await newSession(options)
  const a = await tieSession<Counter & { other?: number }>(id, { ...options, lock: 'exclusive', lockTtl: 5 })
  const plain = await tieSession<Counter & { other?: number }>(id, options)
  plain.other = 7
  await untie(plain)
  a.counter! += 1
  await untie(a)
  const s = await tieSession<Counter & { other?: number }>(id, options)
  t.deepEqual({ counter: s.counter, other: s.other }, { counter: 1, other: 7 })
  await untie(s)
})

for (const kind of ['file', 'memcached'] as const) {
  test(`${kind}: a holder process stopped (SIGSTOP) past lockTtl cannot overwrite the next holder: its untie is ERR_LOCKED and writes nothing`, async (t) => {
    let where: string
    let options: TieOptions
    if (kind === 'memcached') {
      where = `memcached:${server!.address}`
      options = { servers: [server!.address] }
    } else {
      const directory = await tempDir(t, 'lease-test')
      const store = fileStore({ directory })
      t.teardown(() => store.close())
      where = `file:${directory}`
      options = { store }
    }
    const id = await newSession(options)
    const go = path.join(await tempDir(t, 'lease-test'), 'go')
    const holder = runFixture(t, 'lock-stall.ts', [where, id, '1', go])
    t.teardown(() => void holder.process.kill('SIGCONT')) // a stopped child is never left behind
    await holder.line('locked')
    holder.process.kill('SIGSTOP')
    const stopped = performance.now()
    // file: B takes over its lockTtl + 1 s after A's last refresh, so B's lockTtl is short too
    await nextHolder(id, options, 3)
    t.log(`${kind}: B got the lock and saved ${Math.round(performance.now() - stopped)} ms after A was stopped`)
    holder.process.kill('SIGCONT')
    await fs.writeFile(go, '')
    const exit = await holder.exited
    t.is(exit.code, 0, exit.stderr)
    const result = exit.stdout.split('\n').find((line) => line.startsWith('failed') || line === 'untied')
    t.regex(result ?? '', /^failed ERR_LOCKED tied-session: the lock of session \w+ was lost: .*nothing was written/)
    t.is(await counter(id, options), 1, "the stored counter is B's write")
  })
}

test('memcached: a lock add that timed out while the server was stopped is removed once it answers: lock ties work again within requestTimeout + 1 s', async (t) => {
  const own = await useMemcached(t)
  t.teardown(() => own.resume()) // never leave it stopped
  const requestTimeout = 500
  const options: TieOptions = { servers: [own.address], requestTimeout }
  const id = await newSession(options)
  const exclusive = { ...options, lock: 'exclusive', lockTtl: 30 } as const
  await own.pause()
  const err = await t.throwsAsync(tieSession(id, { ...exclusive, lockTimeout: 0 }), { instanceOf: SessionError })
  t.is(err?.code, 'ERR_STORE_UNAVAILABLE', 'no answer within requestTimeout')
  await sleep(1000) // the stall outlasts the failed tie
  own.resume()
  const resumed = performance.now()
  // memcached runs the add it held in its socket buffer now: the lock the failed tie asked for
  const s = await tieSession<Counter>(id, { ...exclusive, lockTimeout: 10_000 })
  const ms = performance.now() - resumed
  t.log(`the lock tie succeeded ${Math.round(ms)} ms after the server answered again`)
  t.true(ms < requestTimeout + 1000, `took ${Math.round(ms)} ms`)
  s.counter! += 1
  await untie(s)
  t.is(await counter(id, options), 1)
})
