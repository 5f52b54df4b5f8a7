/**
 * Lock adds that got no answer (the server was stopped with SIGSTOP) are removed once the server
 * answers again, by one sweeper per store that probes a silent server with one call per round.
 */
import test from 'ava'
import { SessionError } from '../../src/errors.js'
import { memcachedStore } from '../../src/stores/memcached.js'
import { useMemcached } from '../helpers/memcached.js'

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms))

test('20 lock adds that timed out under SIGSTOP are all removed once the server answers; a silent server gets one probe per round', async (t) => {
  const server = await useMemcached(t)
  t.teardown(() => server.resume()) // never leave it stopped
  const requestTimeout = 300
  const store = memcachedStore({ servers: server.address, requestTimeout })
  t.teardown(() => store.close())
  const keys = Array.from({ length: 20 }, (_, i) => `late_${i}`)
  await server.pause()
  const failed = await Promise.all(
    keys.map((key) =>
      store.lock(key, { ttl: 30, wait: 0 }).then(
        () => undefined,
        (err: unknown) => err,
      ),
    ),
  )
  for (const err of failed) t.is((err as SessionError | undefined)?.code, 'ERR_STORE_UNAVAILABLE')
  await sleep(1500) // several rounds of looks at the silent server
  server.resume()
  const resumed = performance.now()
  const releases = await Promise.all(keys.map((key) => store.lock(key, { ttl: 30, wait: 5000 })))
  const ms = performance.now() - resumed
  t.log(`every lock was free again ${Math.round(ms)} ms after the server answered`)
  t.true(ms < requestTimeout + 1000, `took ${Math.round(ms)} ms`)
  await Promise.all(releases.map((release) => release()))
  await sleep(500) // the second looks
  // 20 looks after the return, 20 second looks, 20 gets of the releases, and a few probes: not one look per lock per round
  const gets = Number((await server.stats()).cmd_get)
  t.log(`the server ran ${gets} gets`)
  t.true(gets <= 3 * keys.length + 12, `${gets} gets`)
})

test('close ends the sweep at once, and a closed store looks for nothing', async (t) => {
  const server = await useMemcached(t)
  t.teardown(() => server.resume())
  const store = memcachedStore({ servers: server.address, requestTimeout: 200 })
  await server.pause()
  await t.throwsAsync(store.lock('late', { ttl: 30, wait: 0 }), { instanceOf: SessionError })
  const start = performance.now()
  await store.close()
  t.true(performance.now() - start < 500, `close took ${Math.round(performance.now() - start)} ms`)
})
