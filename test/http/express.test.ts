import anyTest, { type TestFn } from 'ava'
import express, { type ErrorRequestHandler, type Request } from 'express'
import { isSessionError, regenerate, destroy, type Store } from '../../src/index.js'
import { sessionMiddleware, type WebSessionOptions, type WithSession } from '../../src/http/index.js'
import { Browser, idOfCookie, serve } from '../helpers/web.js'
import { STORE_KINDS, storedData, useStore } from '../helpers/web-stores.js'

const test = anyTest as TestFn<unknown>
type Any = Record<string, any>
const session = (req: Request) => (req as unknown as WithSession<Any>).session
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

function expressApp(options: WebSessionOptions) {
  const app = express()
  const errors: unknown[] = []
  app.use(sessionMiddleware(options))
  app.post('/login', async (req, res) => {
    session(req).uid = 'dwho'
    await regenerate(session(req))
    res.redirect('/me')
  })
  app.get('/me', (req, res) => {
    res.json({ uid: session(req).uid ?? null })
  })
  app.get('/cart', async (req, res) => {
    await sleep(Math.random() * 5)
    ;(session(req).cart ??= { items: [] }).items.push(Number(req.query.i))
    res.json({ ok: true })
  })
  app.get('/visit', (req, res) => {
    session(req).visits = (session(req).visits ?? 0) + 1
    res.send(`visit ${session(req).visits}`)
  })
  app.post('/logout', async (req, res) => {
    await destroy(session(req))
    res.redirect('/me')
  })
  const onError: ErrorRequestHandler = (err, _req, res, _next) => {
    errors.push(err)
    res.status(isSessionError(err) ? 503 : 500).json({ code: (err as { code?: string }).code })
  }
  app.use(onError)
  return { app, errors }
}

for (const kind of STORE_KINDS) {
  const opts = (store: Store, more: Partial<WebSessionOptions> = {}): WebSessionOptions => ({
    store,
    cookie: { secret: 's3cret' },
    ...more,
  })

  test(`express, ${kind}: login then res.redirect: the next request sees the login, 100 of 100`, async (t) => {
    const { store } = await useStore(t, kind)
    const base = await serve(t, expressApp(opts(store)).app)
    let seen = 0
    for (let i = 0; i < 100; i++) {
      const b = new Browser(base)
      const res = await b.fetch('/login', { method: 'POST' })
      t.is(res.status, 302)
      if (((await (await b.fetch(res.headers.get('location')!)).json()) as Any).uid === 'dwho') seen++
    }
    t.is(seen, 100)
  })

  test(`express, ${kind}: res.send and res.json wait for the save; no cookie for a session never written`, async (t) => {
    const { store, writes } = await useStore(t, kind)
    const b = new Browser(await serve(t, expressApp(opts(store)).app))
    t.deepEqual(await (await b.fetch('/me')).json(), { uid: null })
    t.deepEqual(b.setCookies.at(-1), [])
    t.is(writes.callCount, 0)
    const res = await b.fetch('/visit')
    t.like(await storedData(store, idOfCookie(b)!), { visits: 1 })
    t.is(await res.text(), 'visit 1')
    t.is(await b.text('/visit'), 'visit 2')
    t.is(writes.callCount, 2)
  })

  test(`express, ${kind}: 20 overlapping requests pushing to one cart keep all 20 (default lock)`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser(await serve(t, expressApp(opts(store)).app))
    await b.text('/visit')
    await Promise.all(Array.from({ length: 20 }, (_, i) => b.fetch(`/cart?i=${i}`).then((r) => r.text())))
    const items: number[] = (await storedData(store, idOfCookie(b)!)).cart.items
    t.is(new Set(items).size, 20)
  })

  test(`express, ${kind}: logout clears the cookie`, async (t) => {
    const { store } = await useStore(t, kind)
    const b = new Browser(await serve(t, expressApp(opts(store)).app))
    await b.fetch('/login', { method: 'POST' })
    const id = idOfCookie(b)!
    await b.fetch('/logout', { method: 'POST' })
    t.false(b.cookies.has('sid'))
    t.is(await store.get(id), undefined)
    t.deepEqual(await (await b.fetch('/me')).json(), { uid: null })
  })
}

test('express: a store that is down reaches the error handler with ERR_STORE_UNAVAILABLE, nothing of the handler sent', async (t) => {
  const { store, server } = await useStore(t, 'memcached', { requestTimeout: 200 })
  const { app, errors } = expressApp({ store, cookie: { secret: 's3cret' } })
  const b = new Browser(await serve(t, app))
  await b.text('/visit')
  await server!.stop()
  const res = await b.fetch('/visit')
  t.is(res.status, 503)
  t.deepEqual(await res.json(), { code: 'ERR_STORE_UNAVAILABLE' })
  const fresh = new Browser(b.base)
  const res2 = await fresh.fetch('/login', { method: 'POST' })
  t.is(res2.status, 503)
  t.is(res2.headers.get('location'), null)
  t.true(errors.length === 2 && errors.every((e) => isSessionError(e, 'ERR_STORE_UNAVAILABLE')))
})
