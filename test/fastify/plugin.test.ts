import anyTest, { type ExecutionContext, type TestFn } from 'ava'
import Fastify from 'fastify'
import { destroy, isSessionError, regenerate, type Store } from '../../src/index.js'
import tiedSession, { sessionUrl, type WebSessionOptions } from '../../src/fastify/index.js'
import { Browser, idOfCookie } from '../helpers/web.js'
import { STORE_KINDS, storedData, useStore } from '../helpers/web-stores.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** A Fastify app with the plugin, listening on a free loopback port until the test's teardown. */
async function fastifyApp(t: ExecutionContext<unknown>, options: WebSessionOptions) {
  const app = Fastify()
  const errors: unknown[] = []
  await app.register(tiedSession, options)
  app.post('/login', async (request, reply) => {
    request.session.uid = 'dwho'
    await regenerate(request.session)
    return reply.redirect('/me')
  })
  app.get('/me', async (request) => ({ uid: request.session.uid ?? null }))
  app.get('/visit', async (request) => {
    const s = request.session as Any
    s.visits = (s.visits ?? 0) + 1
    await sleep(1)
    s.last = 'visit'
    return `visit ${s.visits}`
  })
  app.get<{ Querystring: { i: string } }>('/cart', async (request) => {
    await sleep(Math.random() * 5)
    ;((request.session as Any).cart ??= { items: [] }).items.push(Number(request.query.i))
    return { ok: true }
  })
  app.get('/link', async (request) => {
    request.session.seen = true
    return sessionUrl(request, '/me')
  })
  app.post('/logout', async (request) => {
    await destroy(request.session)
    return 'bye'
  })
  app.setErrorHandler((err, _request, reply) => {
    errors.push(err)
    return reply.status(isSessionError(err) ? 503 : 500).send({ code: (err as { code?: string }).code })
  })
  const base = await app.listen({ port: 0, host: '127.0.0.1' })
  t.teardown(() => app.close())
  return { base, errors }
}

for (const kind of STORE_KINDS) {
  const opts = (store: Store, more: Partial<WebSessionOptions> = {}): WebSessionOptions => ({
    store,
    cookie: { secret: 's3cret' },
    ...more,
  })

  test(`fastify, ${kind}: login then redirect: the next request sees the login, 100 of 100`, async (t) => {
    const { store } = await useStore(t, kind)
    const { base } = await fastifyApp(t, opts(store))
    let seen = 0
    for (let i = 0; i < 100; i++) {
      const b = new Browser(base)
      const res = await b.fetch('/login', { method: 'POST' })
      t.is(res.status, 302)
      if (((await (await b.fetch(res.headers.get('location')!)).json()) as Any).uid === 'dwho') seen++
    }
    t.is(seen, 100)
  })

  test(`fastify, ${kind}: one save per request, before the reply; no cookie and no store call for a session never written`, async (t) => {
    const { store, gets, writes } = await useStore(t, kind)
    const b = new Browser((await fastifyApp(t, opts(store))).base)
    t.deepEqual(await (await b.fetch('/me')).json(), { uid: null })
    t.deepEqual(b.setCookies.at(-1), [])
    t.is(gets.callCount + writes.callCount, 0)
    const res = await b.fetch('/visit')
    t.like(await storedData(store, idOfCookie(b)!), { visits: 1, last: 'visit' })
    t.is(await res.text(), 'visit 1')
    t.is(writes.callCount, 1)
    t.is(await b.text('/visit'), 'visit 2')
    t.is(writes.callCount, 2)
    t.deepEqual(b.setCookies.at(-1), [])
  })

  test(`fastify, ${kind}: 20 overlapping requests pushing to one cart keep all 20 (default lock)`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser((await fastifyApp(t, opts(store))).base)
    await b.text('/visit')
    await Promise.all(Array.from({ length: 20 }, (_, i) => b.text(`/cart?i=${i}`)))
    t.is(new Set((await storedData(store, idOfCookie(b)!)).cart.items).size, 20)
  })

  test(`fastify, ${kind}: regenerate re-sends the cookie, the old id is gone; logout clears it`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser((await fastifyApp(t, opts(store))).base)
    await b.text('/visit')
    const before = idOfCookie(b)!
    await b.fetch('/login', { method: 'POST' })
    t.not(idOfCookie(b), before)
    t.is(await store.get(before), undefined)
    t.is(await b.text('/logout', { method: 'POST' }), 'bye')
    t.false(b.cookies.has('sid'))
    t.deepEqual(await (await b.fetch('/me')).json(), { uid: null })
  })
}

test('fastify: a store that is down reaches the error handler with ERR_STORE_UNAVAILABLE, nothing of the reply sent', async (t) => {
  const { store, server } = await useStore(t, 'memcached', { requestTimeout: 200 })
  const { base, errors } = await fastifyApp(t, { store, cookie: { secret: 's3cret' } })
  const b = new Browser(base)
  await b.text('/visit')
  await server!.stop()
  const res = await b.fetch('/visit')
  t.is(res.status, 503)
  t.deepEqual(await res.json(), { code: 'ERR_STORE_UNAVAILABLE' })
  const fresh = new Browser(base)
  const res2 = await fresh.fetch('/login', { method: 'POST' })
  t.is(res2.status, 503)
  t.is(res2.headers.get('location'), null)
  t.deepEqual(res2.headers.getSetCookie(), [])
  t.true(errors.length === 2 && errors.every((e) => isSessionError(e, 'ERR_STORE_UNAVAILABLE')))
})

test('fastify: sessionUrl takes a Fastify request', async (t) => {
  const { store } = await useStore(t, 'file')
  const { base } = await fastifyApp(t, { store, idFrom: ['cookie', 'query'], cookie: { secret: 's3cret' } })
  t.regex(await (await fetch(`${base}/link`)).text(), /^\/me\?sid=s%3A[0-9a-f]{32}\./)
})
