import test from 'ava'
import { SessionError } from '../../src/errors.js'
import { memoryStore } from '../../src/stores/memory.js'
import { runFixture } from '../helpers/child.js'
import { storeContract } from '../helpers/store-contract.js'

storeContract({ name: 'memory store', clock: 'fake', create: async () => memoryStore() })

test('memory store: size counts live keys only', async (t) => {
  const store = memoryStore()
  await store.write('a', '1', { ttl: 60, mode: 'set' })
  await store.write('b', '2', { ttl: 60, mode: 'set' })
  await store.delete('b')
  t.is(store.size, 1)
})

test('memory store: lock waiters are served first come, first served', async (t) => {
  const store = memoryStore()
  const order: string[] = []
  const release = await store.lock!('k', { ttl: 10, wait: 0 })
  const waiters = ['a', 'b', 'c'].map(async (name) => {
    const mine = await store.lock!('k', { ttl: 10, wait: 5000 })
    order.push(name)
    await new Promise((resolve) => setTimeout(resolve, 10))
    await mine()
  })
  await release()
  await Promise.all(waiters)
  t.deepEqual(order, ['a', 'b', 'c'])
})

test('memory store: a waiter that gave up or was aborted leaves the queue, and the next one is served', async (t) => {
  const store = memoryStore()
  const release = await store.lock!('k', { ttl: 10, wait: 0 })
  const controller = new AbortController()
  const aborted = store.lock!('k', { ttl: 10, wait: 5000, signal: controller.signal }).catch((err: Error) => err.name)
  const timedOut = store.lock!('k', { ttl: 10, wait: 50 }).catch((err: SessionError) => err.code)
  const served = store.lock!('k', { ttl: 10, wait: 5000 })
  controller.abort()
  t.is(await aborted, 'AbortError')
  t.is(await timedOut, 'ERR_LOCKED')
  await release()
  const next = await served
  await next()
})

test('memory store: close fails the waiters with ERR_STORE_UNAVAILABLE and frees every lock', async (t) => {
  const store = memoryStore()
  const release = await store.lock!('k', { ttl: 10, wait: 0 })
  const waiting = store.lock!('k', { ttl: 10, wait: 5000 })
  await store.close()
  const err = await t.throwsAsync(waiting, { instanceOf: SessionError })
  t.is(err?.code, 'ERR_STORE_UNAVAILABLE')
  const again = await store.lock!('k', { ttl: 10, wait: 0 })
  await release() // the old holder's release does nothing now
  t.is(await store.lock!('k', { ttl: 10, wait: 0 }).catch((e: SessionError) => e.code), 'ERR_LOCKED')
  await again()
})

test('memory store: a held lock never keeps the process alive', async (t) => {
  const child = runFixture(t, 'lock-exit.ts', ['memory'], 10_000)
  const exit = await child.exited
  t.is(exit.code, 0, exit.stderr)
  t.false(exit.timedOut)
  t.is(exit.stdout, 'holding\n')
})
