/**
 * The one contract suite every Store passes (memory, file, memcached), in the manner of
 * @keyv/test-suite. Call it from a store's test file with a factory for a fresh store.
 */
import anyTest, { type TestFn, type ExecutionContext } from 'ava'
import sinon from 'sinon'
import { SessionError } from '../../src/errors.js'
import type { Store } from '../../src/stores/store.js'

/** How a store under test is made and how its time passes. */
export interface ContractTarget {
  /** Shown in every test title. */
  name: string
  /** A new store; the suite closes it in teardown. */
  create(t: ExecutionContext): Promise<Store>
  /**
   * `fake`: the store reads `Date.now()`, so the suite fakes the clock (tests run serially);
   * `real`: the store keeps its own time (memcached), so the suite waits for real.
   */
  clock: 'fake' | 'real'
}

const test = anyTest as TestFn<unknown>
let counter = 0
/** A key no other test uses, made only of characters every store accepts. */
const key = (label: string) => `contract_${label}_${process.pid}_${Date.now().toString(36)}_${counter++}`

export function storeContract(target: ContractTarget): void {
  const { name } = target
  const open = async (t: ExecutionContext) => {
    const store = await target.create(t)
    t.teardown(() => store.close())
    return store
  }
  /** Lets `seconds` pass as the store sees time; returns the undo for a fake clock. */
  const timeTravel = (t: ExecutionContext) => {
    if (target.clock === 'fake') {
      const clock = sinon.useFakeTimers({ now: Date.now(), toFake: ['Date'], shouldAdvanceTime: true })
      t.teardown(() => clock.restore())
      return async (seconds: number) => void clock.tick(seconds * 1000)
    }
    return (seconds: number) => new Promise<void>((resolve) => setTimeout(resolve, seconds * 1000))
  }
  const timed = target.clock === 'fake' ? test.serial : test

  test(`${name}: get of a missing key is undefined`, async (t) => {
    const store = await open(t)
    t.is(await store.get(key('missing')), undefined)
  })

  test(`${name}: set then get returns the exact value and a version`, async (t) => {
    const store = await open(t)
    const k = key('set')
    const value = JSON.stringify({ a: 1, text: 'héllo wörld ✓ 😀', lines: 'one\r\ntwo\nthree' })
    t.is(await store.write(k, value, { ttl: 60, mode: 'set' }), 'stored')
    const entry = await store.get(k)
    t.is(entry?.value, value)
    t.is(typeof entry?.version, 'string')
  })

  test(`${name}: raw newlines and backslashes survive a round trip`, async (t) => {
    const store = await open(t)
    const k = key('raw')
    const value = 'line1\r\nline2\\n\\\r\n end'
    await store.write(k, value, { ttl: 60, mode: 'set' })
    t.is((await store.get(k))?.value, value)
  })

  test(`${name}: every write gives a new version`, async (t) => {
    const store = await open(t)
    const k = key('versions')
    await store.write(k, 'a', { ttl: 60, mode: 'set' })
    const v1 = (await store.get(k))?.version
    await store.write(k, 'a', { ttl: 60, mode: 'set' })
    const v2 = (await store.get(k))?.version
    t.truthy(v1)
    t.not(v1, v2)
  })

  test(`${name}: add stores only when the key is absent`, async (t) => {
    const store = await open(t)
    const k = key('add')
    t.is(await store.write(k, 'first', { ttl: 60, mode: 'add' }), 'stored')
    t.is(await store.write(k, 'second', { ttl: 60, mode: 'add' }), 'exists')
    t.is((await store.get(k))?.value, 'first')
  })

  test(`${name}: replace stores only when the key is present`, async (t) => {
    const store = await open(t)
    const k = key('replace')
    t.is(await store.write(k, 'x', { ttl: 60, mode: 'replace' }), 'not_found')
    t.is(await store.get(k), undefined)
    await store.write(k, 'first', { ttl: 60, mode: 'set' })
    t.is(await store.write(k, 'second', { ttl: 60, mode: 'replace' }), 'stored')
    t.is((await store.get(k))?.value, 'second')
  })

  test(`${name}: cas stores at the current version, refuses a stale one, and reports a missing key`, async (t) => {
    const store = await open(t)
    const k = key('cas')
    t.is(await store.write(k, 'x', { ttl: 60, mode: 'cas', version: '1' }), 'not_found')
    await store.write(k, 'v1', { ttl: 60, mode: 'set' })
    const read = await store.get(k)
    t.is(await store.write(k, 'v2', { ttl: 60, mode: 'cas', version: read!.version! }), 'stored')
    t.is(await store.write(k, 'v3', { ttl: 60, mode: 'cas', version: read!.version! }), 'exists')
    t.is((await store.get(k))?.value, 'v2')
  })

  test(`${name}: of two concurrent cas writes at one version, exactly one lands`, async (t) => {
    const store = await open(t)
    const k = key('cas_race')
    await store.write(k, 'base', { ttl: 60, mode: 'set' })
    const { version } = (await store.get(k))!
    const results = await Promise.all(
      ['a', 'b', 'c', 'd'].map((v) => store.write(k, v, { ttl: 60, mode: 'cas', version: version! })),
    )
    t.is(results.filter((r) => r === 'stored').length, 1)
    t.is(results.filter((r) => r === 'exists').length, 3)
    const winner = ['a', 'b', 'c', 'd'][results.indexOf('stored')]
    t.is((await store.get(k))?.value, winner)
  })

  test(`${name}: delete removes a key and reports whether it was there`, async (t) => {
    const store = await open(t)
    const k = key('delete')
    await store.write(k, 'x', { ttl: 60, mode: 'set' })
    t.true(await store.delete(k))
    t.is(await store.get(k), undefined)
    t.false(await store.delete(k))
  })

  test(`${name}: a value over the size limit is ERR_TOO_LARGE and the old value stays`, async (t) => {
    const store = await open(t)
    const k = key('large')
    await store.write(k, 'small', { ttl: 60, mode: 'set' })
    const err = await t.throwsAsync(store.write(k, 'x'.repeat(1_000_001), { ttl: 60, mode: 'set' }), {
      instanceOf: SessionError,
    })
    t.is(err?.code, 'ERR_TOO_LARGE')
    t.is((await store.get(k))?.value, 'small')
    t.is(await store.write(k, 'y'.repeat(900_000), { ttl: 60, mode: 'set' }), 'stored')
    t.is((await store.get(k))?.value.length, 900_000)
  })

  timed(`${name}: a key expires after its ttl, and 0 means never`, async (t) => {
    const store = await open(t)
    const pass = timeTravel(t)
    const short = key('ttl_short')
    const never = key('ttl_never')
    // memcached counts whole seconds: a ttl of 2 lives 1-2 s, so read at once, check after 3.2
    await store.write(short, 'x', { ttl: 2, mode: 'set' })
    await store.write(never, 'y', { ttl: 0, mode: 'set' })
    t.is((await store.get(short))?.value, 'x')
    await pass(3.2)
    t.is(await store.get(short), undefined)
    t.is((await store.get(never))?.value, 'y')
    // an expired key is absent for every mode
    t.is(await store.write(short, 'z', { ttl: 60, mode: 'replace' }), 'not_found')
    t.is(await store.write(short, 'z', { ttl: 60, mode: 'add' }), 'stored')
  })

  timed(`${name}: touch extends a ttl and reports a missing key`, async (t) => {
    const store = await open(t)
    const pass = timeTravel(t)
    const k = key('touch')
    t.false(await store.touch(k, 60))
    await store.write(k, 'x', { ttl: 2, mode: 'set' })
    t.true(await store.touch(k, 60))
    await pass(3.2)
    t.is((await store.get(k))?.value, 'x')
    t.true(await store.touch(k, 1))
    await pass(2.2)
    t.is(await store.get(k), undefined)
  })

  timed(`${name}: keys lists the live keys under a prefix`, async (t) => {
    const store = await open(t)
    if (store.keys === undefined) {
      t.pass('this store does not list keys')
      return
    }
    const pass = timeTravel(t)
    const prefix = key('keys') + '_'
    await store.write(prefix + 'a', '1', { ttl: 60, mode: 'set' })
    await store.write(prefix + 'b', '2', { ttl: 60, mode: 'set' })
    await store.write(prefix + 'gone', '3', { ttl: 60, mode: 'set' })
    await store.write(prefix + 'expiring', '4', { ttl: 2, mode: 'set' })
    await store.write(key('other'), '5', { ttl: 60, mode: 'set' })
    await store.delete(prefix + 'gone')
    await pass(3.2)
    const seen: string[] = []
    for await (const k of store.keys(prefix)) seen.push(k)
    t.deepEqual(seen.sort(), [prefix + 'a', prefix + 'b'])
  })

  test(`${name}: close resolves and may be called twice`, async (t) => {
    const store = await target.create(t)
    await store.write(key('close'), 'x', { ttl: 60, mode: 'set' })
    await t.notThrowsAsync(store.close())
    await t.notThrowsAsync(store.close())
  })
}
