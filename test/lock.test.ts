/**
 * Exclusive locks and atomic updates across real processes, on the file store (one shared
 * directory) and on memcached (one server started here): counters raced by 8 processes, a holder
 * killed with SIGKILL, waits ended by lockTimeout and by an AbortSignal.
 */
import { promises as fs } from 'node:fs'
import path from 'node:path'
import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import { SessionError, closeStores, fileStore, snapshot, tieSession, untie, type TieOptions } from '../src/index.js'
import { runFixture } from './helpers/child.js'
import { startMemcached, type MemcachedServer } from './helpers/memcached.js'
import { tempDir } from './helpers/temp-dir.js'

const test = anyTest as TestFn<unknown>
type T = ExecutionContext<unknown>
type Kind = 'file' | 'memcached'
type Counter = Record<string, number>

const WORKERS = 8
const ITERATIONS = 50

let server: MemcachedServer | undefined
test.before(async () => {
  server = await startMemcached()
})
test.after.always(async () => {
  await closeStores()
  await server?.stop()
})

/** Where a test's sessions live: `where` for the fixtures, `options` for this process. */
async function backend(t: T, kind: Kind): Promise<{ where: string; options: TieOptions }> {
  if (kind === 'memcached') return { where: `memcached:${server!.address}`, options: { servers: [server!.address] } }
  const directory = await tempDir(t, 'lock-test')
  const store = fileStore({ directory })
  t.teardown(() => store.close())
  return { where: `file:${directory}`, options: { store } }
}

/** A new session holding `data`; resolves to its id. */
async function newSession(options: TieOptions, data: Counter): Promise<string> {
  const s = await tieSession<Counter>(undefined, options)
  Object.assign(s, data)
  await untie(s)
  return s._session_id
}

/** The session's data as stored now. */
async function read(id: string, options: TieOptions): Promise<Counter> {
  const s = await tieSession<Counter>(id, options)
  const data = snapshot(s) as Counter
  await untie(s)
  return data
}

type Mode = 'lock' | 'update' | 'plain'

/**
 * Runs WORKERS lock-counter fixtures on `kind`, one phase per mode, each on a session of its
 * own that every worker starts together; resolves to each session's final data. The same
 * processes run every phase (a tsx start costs ~0.5 s of CPU).
 */
async function race(t: T, kind: Kind, modes: Mode[]): Promise<Record<Mode, Counter>> {
  const { where, options } = await backend(t, kind)
  const ids = await Promise.all(modes.map(() => newSession(options, { counter: 0 })))
  const go = await tempDir(t, 'lock-test')
  const phases = modes.map((mode, i) => `${mode}:${ids[i]}`)
  const workers = Array.from({ length: WORKERS }, (_, w) =>
    runFixture(t, 'lock-counter.ts', [where, String(w), String(ITERATIONS), go, ...phases], 50_000),
  )
  const results = {} as Record<Mode, Counter>
  for (const [i, mode] of modes.entries()) {
    await Promise.all(workers.map((worker) => worker.line(`ready ${mode}`)))
    const started = performance.now()
    await fs.writeFile(path.join(go, mode), '')
    await Promise.all(workers.map((worker) => worker.line(`done ${mode}`)))
    const ms = Math.round(performance.now() - started)
    const summaries = workers.flatMap((worker) => worker.stdout.split('\n').filter((line) => line.startsWith(`{"mode":"${mode}"`)))
    const resaved = summaries.map((line) => (JSON.parse(line) as { resaved: number }).resaved).reduce((a, b) => a + b, 0)
    const extra = mode === 'plain' ? `; ${resaved} saves ran out of cas rounds and were saved again` : ''
    t.log(`${kind}: ${WORKERS} x ${ITERATIONS} ${mode} increments took ${ms} ms${extra}`)
    results[mode] = await read(ids[i]!, options)
  }
  for (const exit of await Promise.all(workers.map((worker) => worker.exited))) t.is(exit.code, 0, exit.stderr)
  return results
}

for (const kind of ['file', 'memcached'] as const) {
  // serial: one race at a time, so that 8 busy processes do not starve the timing tests around
  test.serial(
    `${kind}: ${WORKERS} processes x ${ITERATIONS} increments of one counter: exactly ${WORKERS * ITERATIONS} under lock: 'exclusive' and with updateSession; plain ties keep each process's own key`,
    async (t) => {
      const result = await race(t, kind, ['lock', 'update', 'plain'])
      t.is(result.lock.counter, WORKERS * ITERATIONS, "lock: 'exclusive'")
      t.is(result.update.counter, WORKERS * ITERATIONS, 'updateSession')
      // plain ties: optimistic saves merge by top-level key, so the shared key is last writer wins
      const plain = result.plain
      t.log(`${kind}: plain ties: the shared counter ended at ${plain.counter} of ${WORKERS * ITERATIONS} (lost updates are expected)`)
      // a save that lost a cas race re-applies its own counter (read + 1) over the newer one, so the
      // shared counter can go down as well as up: only its bounds are sure
      t.true(plain.counter! >= 1 && plain.counter! <= WORKERS * ITERATIONS, `plain counter ${plain.counter}`)
      for (let w = 0; w < WORKERS; w++) t.is(plain[`w${w}`], ITERATIONS, `plain ties: worker ${w}'s own key`)
    },
  )

  test(`${kind}: a holder killed with SIGKILL keeps the lock for lockTtl, then another process gets it`, async (t) => {
    const ttl = 3
    const { where, options } = await backend(t, kind)
    const id = await newSession(options, { counter: 0 })
    const holder = runFixture(t, 'lock-holder.ts', [where, id, String(ttl), path.join(await tempDir(t, 'lock-test'), 'never')])
    await holder.line('locked')
    const lockedAt = performance.now()
    holder.process.kill('SIGKILL')
    t.is((await holder.exited).signal, 'SIGKILL')
    const early = await t.throwsAsync(tieSession(id, { ...options, lock: 'exclusive', lockTtl: ttl, lockTimeout: 0 }), {
      instanceOf: SessionError,
    })
    t.is(early?.code, 'ERR_LOCKED', 'the dead holder still holds the lock')
    const s = await tieSession<Counter>(id, { ...options, lock: 'exclusive', lockTtl: ttl, lockTimeout: 15_000 })
    const after = performance.now() - lockedAt
    t.log(`${kind}: got the lock ${Math.round(after)} ms after the holder took it (lockTtl ${ttl} s)`)
    // file: lockTtl + 1 s after the holder's last refresh; memcached: lockTtl to lockTtl + 1 s
    t.true(after >= ttl * 1000 - 300, `got it after ${after} ms, before lockTtl`)
    t.true(after < ttl * 1000 + 5000, `got it only after ${after} ms`)
    s.counter! += 1
    await untie(s)
    t.is((await read(id, options)).counter, 1)
  })

  test(`${kind}: lockTimeout and an AbortSignal end the wait with ERR_LOCKED / AbortError, and nothing stays locked`, async (t) => {
    const { where, options } = await backend(t, kind)
    const id = await newSession(options, { counter: 0 })
    const release = path.join(await tempDir(t, 'lock-test'), 'release')
    const holder = runFixture(t, 'lock-holder.ts', [where, id, '30', release])
    await holder.line('locked')
    const exclusive = { ...options, lock: 'exclusive' } as const

    let start = performance.now()
    const timedOut = await t.throwsAsync(tieSession(id, { ...exclusive, lockTimeout: 500 }), { instanceOf: SessionError })
    let ms = performance.now() - start
    t.is(timedOut?.code, 'ERR_LOCKED')
    t.regex(timedOut?.message ?? '', /locked by another holder; waited \d+ ms/)
    t.true(ms >= 490 && ms < 3000, `lockTimeout 500 gave up after ${ms} ms`)

    const controller = new AbortController()
    setTimeout(() => controller.abort(), 300)
    start = performance.now()
    const aborted = await tieSession(id, { ...exclusive, lockTimeout: 10_000, signal: controller.signal }).then(
      () => undefined,
      (err: unknown) => err as Error,
    )
    ms = performance.now() - start
    t.is(aborted?.name, 'AbortError')
    t.true(ms >= 290 && ms < 3000, `the abort ended the wait after ${ms} ms`)

    await fs.writeFile(release, '')
    await holder.line('released')
    t.is((await holder.exited).code, 0)
    start = performance.now()
    const s = await tieSession(id, { ...exclusive, lockTimeout: 0 })
    t.true(performance.now() - start < 2000, 'the lock was free at once')
    await untie(s)
  })
}
